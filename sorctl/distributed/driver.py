"""The outer loop of the distributed solve: colours in turn, the blocks of a colour in parallel.

With method cg-ssor the workers run CG preconditioned by that same symmetric sweep instead
(sorctl.distributed.node_cg; on a grid in natural order the blocks are strips that sweep as a
pipeline, node_pipeline): rounds of CG iterations, inner products summed among the workers.

One outer iteration sweeps every colour once (SSOR: colours forward with forward sweeps, then
backward with backward sweeps). With one inner sweep this is exactly global SOR in the order
(colour, block, row) because blocks of one colour share no nonzero. The driver places the blocks,
wires the workers to each other, and then asks for rounds of iterations: inside a round the
workers pass values among themselves (sorctl.distributed.node) and the driver only hears the
residual at its end. Its copy of x is current after a gather (at the end, at checkpoints, and
after a node loss, before the survivors are wired again).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from sorctl.distributed.blocks import Held, Link, links
from sorctl.distributed.executor import Executor, Job, NodeLost, machine
from sorctl.distributed.node_block import ROUND_FIGURES
from sorctl.distributed.partition import (
    block_graph,
    block_labels,
    colour_blocks,
    contiguous_blocks,
    natural_blocks,
    pipeline_strips,
    place_blocks,
    slots_of,
)
from sorctl.distributed.pipeline import Pipeline, chunk_cuts, plan_pipeline
from sorctl.distributed.rows import GridRows, MatrixRows, RowSource, entries_of, rows_of
from sorctl.errors import ClusterError
from sorctl.options import DEFAULTS, SolveOptions
from sorctl.solver.monitor import MAX_GAP, Monitor
from sorctl.solver.omega import (
    BLOCK_COLOURED_SSOR_OMEGA_MAX,
    DENSE_EXACT_N,
    choose_omega,
    choose_ssor_omega,
    lanczos_steps,
    rule_of,
    settled_extremes,
)
from sorctl.solver.peak_memory import peak_rss_bytes
from sorctl.solver.result import SolveResult

Progress = Callable[[int, float], None]
Checkpoint = Callable[[np.ndarray, int, float], None]
EventSink = Callable[[dict[str, Any]], None]


@dataclass
class Cut:
    """How the rows are cut and coloured, for a number of CPUs (not yet which ones)."""

    cpus: int
    parts: list[np.ndarray]  # each block's rows, in sweep order
    work: list[int]  # each block's entries plus rows: what placing balances
    colour: np.ndarray
    pipelined: bool  # strips that sweep as a pipeline (cg-ssor), else coloured blocks
    label: np.ndarray  # each row's block


@dataclass
class Plan(Cut):
    """A cut placed on the nodes; the blocks' records and the links between them once the
    workers hold the blocks (they are made there, from the rows sent to them)."""

    node_of: list[str] = field(default_factory=list)
    blocks: list[Held] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    pipeline: Pipeline | None = None

    @property
    def ncolours(self) -> int:
        return int(self.colour.max()) + 1 if self.colour.size else 0

    @property
    def order(self) -> str:
        """How the blocks sweep: as "pipelined" strips or as "coloured" blocks."""
        return "pipelined" if self.pipelined else "coloured"

    def settle(self, n: int, blocks: list[Held]) -> None:
        """The blocks' records as the workers made them: the links between them, and the
        pipeline's pieces (which reorder the links)."""
        self.blocks = blocks
        self.links = links(blocks, n)
        self.pipeline = plan_pipeline(n, blocks, self.links) if self.pipelined else None


def cut(
    A,
    cpus: int,
    nblocks: int | None = None,
    parts: list[np.ndarray] | None = None,
    pipelined: bool = False,
) -> Cut:
    """Cut A (a matrix, or a row source: sorctl.distributed.rows) into blocks for `cpus` CPUs
    and colour them. Default: two blocks per CPU, so each of two colours keeps every CPU busy;
    cut from RCM order when A is held whole, else in A's own order. `parts` overrides the cut
    (tests use a row colouring). pipelined (cg-ssor): one strip per CPU in A's own order when A
    has such a split (sorctl.distributed.partition.pipeline_strips), so the sweep is one
    machine's; else blocks."""
    source = rows_of(A)
    n = source.n
    if pipelined and parts is None and nblocks is None:
        strips = pipeline_strips(source, cpus)
        if strips is not None:
            work = [entries_of(source.indptr, rows) + rows.size for rows in strips]
            zero = np.zeros(len(strips), dtype=np.int64)
            return Cut(cpus, strips, work, zero, True, block_labels(n, strips))
    if parts is None:
        count = nblocks or 2 * max(cpus, 1)
        if isinstance(source, MatrixRows):
            parts = contiguous_blocks(source.A, count)
        else:
            parts = natural_blocks(source.indptr, count)
    itype = np.int32 if n < 2**31 else np.int64  # no empty block below
    parts = [np.asarray(rows).astype(itype, copy=False) for rows in parts if len(rows)]
    label = block_labels(n, parts)
    colour = colour_blocks(block_graph(source, label, len(parts)))
    work = [entries_of(source.indptr, rows) + rows.size for rows in parts]
    return Cut(cpus, parts, work, colour, False, label)


def place(c: Cut, node_cpus: dict[str, int]) -> Plan:
    """The cut's blocks on the nodes' CPUs (strips in order; blocks balanced per colour)."""
    slots = slots_of(node_cpus)
    if c.pipelined:
        node_of = slots[: len(c.parts)]
    else:
        node_of = place_blocks(c.work, c.colour.tolist(), slots)
    return Plan(**{f.name: getattr(c, f.name) for f in fields(Cut)}, node_of=node_of)


def plan(
    A,
    node_cpus: dict[str, int],
    nblocks: int | None = None,
    parts: list[np.ndarray] | None = None,
    pipelined: bool = False,
) -> Plan:
    """cut and place: A's blocks on these nodes' CPUs."""
    cpus = len(slots_of(node_cpus))
    return place(cut(A, cpus, nblocks, parts, pipelined), node_cpus)


@dataclass
class _Stats:
    # Per kind of round (iterate, gather, ...): wall time and count. For iterate rounds also the
    # critical path in the kernels (the busiest worker's sweeps and residual) and the bytes the
    # workers sent each other; the rest of an iterate round's wall time is messages and waiting.
    wall: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    compute: float = 0.0
    sent_bytes: float = 0.0
    per_worker: dict[str, dict[str, float]] = field(default_factory=dict)  # summed answers
    block_bytes: dict[str, int] = field(default_factory=dict)  # rows of A sent to each worker
    rows_reread: int = 0  # rows read again for blocks moved off a lost node
    kept_blocks: int = 0  # blocks the nodes held from an earlier solve: no rows sent
    recovered_rows: int = 0  # rows of x taken from a buddy's copy after a loss
    made_rows: int = 0  # rows of a grid system the nodes made themselves (none sent)
    iterations: int = 0
    lanczos_steps: int = 0  # the omega estimate's, on the workers
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, op: str, wall: float) -> None:
        self.wall[op] = self.wall.get(op, 0.0) + wall
        self.rounds[op] = self.rounds.get(op, 0) + 1


class _Runner:
    """Places blocks, wires the workers to each other, runs iterate rounds, and moves blocks off
    nodes that are lost (then rewires: a new epoch of links between the survivors)."""

    def __init__(
        self,
        executor: Executor,
        plan_: Plan,
        source: RowSource,
        b: np.ndarray,
        x: np.ndarray,
        job_timeout: float,
        poll_s: float,
        on_event: EventSink | None,
        t0: float,
        sums: bool = False,
    ) -> None:
        # every worker links to every other one: CG's and the omega estimate's sums go to all
        self.sums = sums
        self.ex = executor
        self.plan = plan_
        self.source = source
        self.b = b
        self.x = x
        self.job_timeout = job_timeout
        self.poll_s = poll_s
        self.on_event = on_event
        self.t0 = t0
        self.stats = _Stats()
        self.system_key = ""  # set: the nodes keep the blocks (sorctl.distributed.node_cache)
        self.solve_id = uuid.uuid4().hex[:16]
        self.lost: set[str] = set()
        self.listening: dict[str, tuple[str, int]] = {}
        self.epoch = 0
        self.wired = False

    def event(self, kind: str, **fields: Any) -> None:
        ev = {"event": kind, "t": round(time.monotonic() - self.t0, 3), **fields}
        self.stats.events.append(ev)
        if self.on_event:
            self.on_event(ev)

    # -- placing data -----------------------------------------------------------------------
    def start(self) -> None:
        self._load(list(range(len(self.plan.parts))))
        self._ensure_wired()

    def _load(self, ids: list[int]) -> None:
        """Make blocks `ids` on their nodes: their rows read from the source and sent as they
        are read, their values of x the driver's current copy. A node lost on the way: its
        blocks move, and every block not yet made is sent again."""
        ids = sorted(set(ids))
        held: dict[int, Held] = {}
        while ids:
            try:
                held.update(self._send_rows(ids))
                ids = []
            except NodeLost as lost:
                ids = sorted(set(ids) | set(self._lose(lost)))
                held = {k: h for k, h in held.items() if k not in ids}
        if not self.plan.blocks:  # the first load: the links follow from the blocks' halos
            self.plan.settle(self.source.n, [held[k] for k in range(len(self.plan.parts))])
        else:  # moved after a loss: the same rows, the same halo
            self.stats.rows_reread += sum(h.size for h in held.values())

    def _send_rows(self, ids: list[int]) -> dict[int, Held]:
        """One pass over the rows of blocks `ids`: their rows go to their nodes piece by piece
        as they are read (a few windows in flight), and the nodes make the blocks."""
        p, n = self.plan, self.source.n
        kept_before = []
        begun: dict[str, tuple[int, Job]] = {}  # one block's b and x on its way to each node

        def answered(node: str) -> None:
            k, job = begun.pop(node)
            if self._wait(job, k, "load"):
                kept_before.append(k)

        for k in ids:
            rows, node = p.parts[k], p.node_of[k]
            keep_as = _block_key(self.system_key, rows) if self.system_key else ""
            entries = entries_of(self.source.indptr, rows)
            payload = (rows, n, entries, self.b[rows], self.x[rows], keep_as)
            if node in begun:
                answered(node)
            begun[node] = (k, self.ex.submit(node, "load_begin", self.solve_id, k, payload))
        for node in list(begun):
            answered(node)
        self.stats.kept_blocks += len(kept_before)
        to_send = [k for k in ids if k not in kept_before]  # those the nodes have: no rows sent
        if isinstance(self.source, GridRows):  # each node makes its blocks' rows itself
            grid = self.source.grid.to_dict()
            made = {k: self.ex.submit(p.node_of[k], "load_grid", self.solve_id, k, grid)
                    for k in to_send}  # fmt: skip
            for k, job in made.items():
                self._wait(job, k, "load")
                self.stats.made_rows += p.parts[k].size
        else:
            self._send_pieces(to_send)
        cuts = chunk_cuts(n) if p.pipelined else None
        ends = {k: self.ex.submit(p.node_of[k], "load_end", self.solve_id, k, cuts) for k in ids}
        held = {k: self._wait(job, k, "load") for k, job in ends.items()}
        for k, h in held.items():
            h.rows = p.parts[k]  # one copy of each block's rows here
        return held

    def _send_pieces(self, ids: list[int]) -> None:
        """Blocks `ids`' rows read from the source and sent, a bounded window on its way."""
        p = self.plan
        flying: list[tuple[int, Job, int]] = []
        in_flight = 0
        sent = self.stats.block_bytes
        for k, piece in self.source.pieces(p.parts, p.label, ids):
            slot = p.node_of[k]
            size = sum(a.nbytes for a in piece)
            sent[slot] = sent.get(slot, 0) + size
            flying.append((k, self.ex.submit(slot, "load_piece", self.solve_id, k, piece), size))
            in_flight += size
            while in_flight > PIECES_IN_FLIGHT_BYTES:  # a bounded window of A on its way
                k0, job, size0 = flying.pop(0)
                self._wait(job, k0, "load")
                in_flight -= size0
        for k, job, _ in flying:
            self._wait(job, k, "load")

    def _lose(self, lost: NodeLost) -> list[int]:
        """Forget the node and re-place its blocks on the least-loaded survivors; returns the
        blocks moved (their data is not sent yet). The links must be wired again."""
        dead = lost.node
        self.wired = False
        moved = [k for k, n in enumerate(self.plan.node_of) if n == dead]
        if dead not in self.lost:
            self.lost.add(dead)
            self.ex.forget(dead)
            self.event("node_lost", node=dead, reason=lost.why, blocks=moved)
        alive = self.ex.nodes()
        if not alive:
            raise ClusterError(f"every node is gone (last lost: {dead}: {lost.why})")
        load = {n: 0.0 for n in alive}
        work = self.plan.work
        for k, n in enumerate(self.plan.node_of):
            if n in load:
                load[n] += work[k] / alive[n]
        for k in moved:
            to = min(load, key=lambda n: (load[n], n))
            load[to] += work[k] / alive[to]
            self.plan.node_of[k] = to
            self.event("block_moved", block=k, source=dead, target=to)
        return moved

    def _wait(self, job: Job, k: int | str, op: str) -> Any:
        """Wait for one job, never forever: poll, ask the executor whether the cluster still
        answers, and give up on the job after job_timeout (its node counts as lost)."""
        deadline = time.monotonic() + self.job_timeout
        while not job.wait(self.poll_s):
            self.ex.health()
            if time.monotonic() > deadline:
                raise NodeLost(
                    job.node, f"{op} job on {k} gave no answer in {self.job_timeout:.0f} s"
                )
        return job.outcome()

    def _wait_all(self, jobs: dict[str, Job], answers: dict[str, Any]) -> None:
        """Wait for jobs that wait for each other: a worker blocked on a dead peer never answers,
        so while waiting on one, look at the others too (a lost one raises NodeLost)."""
        deadline = time.monotonic() + self.job_timeout
        next_health = time.monotonic() + self.poll_s
        while len(answers) < len(jobs):
            slot, job = next((s, j) for s, j in jobs.items() if s not in answers)
            if job.wait(LOOK_AROUND_S):
                answers[slot] = job.outcome()
                continue
            for other, j in jobs.items():
                if other not in answers and j.wait(0):
                    answers[other] = j.outcome()
            if time.monotonic() > next_health:
                self.ex.health()
                next_health = time.monotonic() + self.poll_s
            if time.monotonic() > deadline:
                raise NodeLost(job.node, f"gave no answer in {self.job_timeout:.0f} s")

    # -- links between the workers ----------------------------------------------------------
    def _workers(self) -> list[str]:
        return sorted(set(self.plan.node_of))

    def _ensure_wired(self) -> None:
        """Wire the workers that hold blocks (after the start, or a loss) until it holds."""
        while not self.wired:
            try:
                self._wire()
            except NodeLost as lost:
                self._load(self._lose(lost))

    def _wire(self) -> None:
        t = time.perf_counter()
        slots = self._workers()
        tls = self.ex.tls_pem
        for slot in slots:  # each worker's listening port, once
            if slot not in self.listening:
                job = self.ex.submit(slot, "listen", self.solve_id, 0, tls[1] if tls else "")
                self.listening[slot] = self._wait(job, slot, "listen")
        self.epoch += 1
        jobs = {s: self.ex.submit(s, "wire", self.solve_id, 0, self._wiring(s)) for s in slots}
        failed: ClusterError | None = None
        for slot, job in jobs.items():
            try:
                self._wait(job, slot, "wire")
            except ClusterError as exc:  # a worker could not link to another one
                failed = failed or exc
        if failed is not None:
            raise ClusterError(f"the workers cannot reach each other: {failed}")
        self.wired = True
        self.stats.add("wire", time.perf_counter() - t)

    def _wiring(self, slot: str) -> dict[str, Any]:
        node_of = self.plan.node_of
        mine = [k for k, n in enumerate(node_of) if n == slot]
        sends: dict[int, list[tuple[int, np.ndarray, str]]] = {}
        recvs: dict[tuple[int, int], np.ndarray] = {}
        remote, peers, heard = [], {}, set(mine)
        for lk in self.plan.links:
            src, dst = node_of[lk.src], node_of[lk.dst]
            if src == slot:
                sends.setdefault(lk.src, []).append((lk.dst, lk.rows, "" if dst == slot else dst))
            if dst == slot:
                recvs[(lk.src, lk.dst)] = lk.slots
                heard.add(lk.src)
                if src != slot:
                    remote.append((lk.src, lk.dst))
            for other in (src, dst):
                if slot in (src, dst) and other != slot:
                    peers[other] = self.listening[other]
        workers = self._workers()
        if self.sums:
            peers = {other: self.listening[other] for other in workers if other != slot}
        buddy = _buddy_of(slot, workers)
        for other in workers:  # linked to its buddy and to the worker it is the buddy of
            if other != slot and (other == buddy or _buddy_of(other, workers) == slot):
                peers[other] = self.listening[other]
        colour = self.plan.colour
        pipe = self.plan.pipeline
        if pipe is not None:
            pipe_wiring = {
                "bounds": {k: pipe.bounds[k] for k in mine},
                "links": {
                    key: (lp.forward, lp.ptr, lp.need, {int(c): p for p, c in enumerate(lp.chunk)})
                    for key, lp in pipe.pieces.items()
                    if slot in (node_of[key[0]], node_of[key[1]])
                },
            }
        return {
            "epoch": self.epoch,
            "workers": workers,
            "ncolours": self.plan.ncolours,
            "colour": {k: int(colour[k]) for k in sorted(heard)},
            "sends": sends,
            "recvs": recvs,
            "remote": remote,
            "peers": peers,
            "halos": {k: self.x[self.plan.blocks[k].halo] for k in mine},
            "pipe": pipe_wiring if pipe is not None else None,
            "buddy": buddy,
            "keeps_for": [o for o in workers if o != slot and _buddy_of(o, workers) == slot],
        }

    # -- rounds -------------------------------------------------------------------------------
    def iterate(self, iterations: int, omega: float, sweeps: int, ssor: bool) -> float | None:
        """`iterations` outer iterations on every worker at once, exchanging values directly;
        returns ||b - A x|| afterwards, or None when a node was lost on the way (its blocks
        moved; the caller measures again with iterate(0))."""
        answers = self._round("iterate", iterations, (iterations, omega, sweeps, ssor))
        return None if answers is None else math.sqrt(sum(a["r2"] for a in answers.values()))

    def iterate_cg(
        self, iterations: int, omega: float, stop_below: float, restart: bool
    ) -> tuple[float, float, int, bool] | None:
        """Up to `iterations` CG iterations on every worker at once (sorctl.distributed.node_cg):
        (||b - A x||, CG's recursive ||r||, iterations done, breakdown), or None when a node was
        lost (its blocks moved; the next wiring restarts CG from the gathered x)."""
        args = (iterations, omega, stop_below, restart)
        answers = self._round("iterate_cg", iterations, args)
        if answers is None:
            return None
        one = next(iter(answers.values()))  # the sums agree on every worker
        return (
            math.sqrt(sum(a["r2"] for a in answers.values())),
            math.sqrt(one["rr"]) if one["rr"] >= 0 else math.nan,
            int(one["done"]),
            bool(one["breakdown"]),
        )

    def lanczos(self, steps: int, seed: int | None) -> tuple[list[float], list[float]] | None:
        """Up to `steps` Lanczos steps on every worker at once (sorctl.distributed.node_lanczos;
        a seed starts afresh): their (alphas, betas), or None when a node was lost (the next
        wiring starts the estimate again)."""
        answers = self._round("lanczos", 0, (steps, seed), record="omega")
        if answers is None:
            return None
        one = next(iter(answers.values()))  # the sums agree on every worker
        self.stats.lanczos_steps += len(one["alphas"])
        return list(one["alphas"]), list(one["betas"])

    def lanczos_end(self) -> None:
        """The workers drop the estimate's vectors (a node lost meanwhile: the new wiring has
        dropped them)."""
        self._round("lanczos_end", 0, (), record="omega")

    def _round(
        self, op: str, iterations: int, args: tuple, record: str = "residual"
    ) -> dict[str, Any] | None:
        """One round on every worker: their answers, or None after a node loss. A round of no
        iterations counts in the stats as `record`, not as iterations."""
        self._ensure_wired()
        start = time.perf_counter()
        jobs = {s: self.ex.submit(s, op, self.solve_id, 0, args) for s in self._workers()}
        answers: dict[str, Any] = {}
        try:
            self._wait_all(jobs, answers)
        except NodeLost as lost:
            for slot in jobs:  # the others may be waiting for the lost node's values
                if slot != lost.node and slot not in answers:
                    self.ex.submit(slot, "abort", self.solve_id, 0, None)
            buddies = {k: _buddy_of(self.plan.node_of[k], self._workers()) for k in
                       range(len(self.plan.parts))}  # fmt: skip
            moved = self._lose(lost)
            self.gather([k for k in range(len(self.plan.parts)) if k not in moved])
            self._recover(moved, buddies)
            self._load(moved)  # with their buddies' copies, else the last gather's values
            return None
        if iterations == 0:  # a residual check, omega steps: not part of the per-iteration figures
            self.stats.add(record, time.perf_counter() - start)
            return answers
        seconds = time.perf_counter() - start
        self.stats.add("iterate", seconds)
        done = int(next(iter(answers.values())).get("done", iterations))  # CG may stop early
        self.stats.iterations += done
        self.stats.compute += max(a["sweep_s"] + a["residual_s"] for a in answers.values())
        self.stats.sent_bytes += sum(a["sent_bytes"] for a in answers.values())
        figures = {s: {k: a.get(k, 0.0) for k in ROUND_FIGURES} for s, a in answers.items()}
        for slot, f in figures.items():
            mine = self.stats.per_worker.setdefault(slot, dict.fromkeys(f, 0.0))
            for key, value in f.items():
                mine[key] += value
        if self.on_event:  # live per-worker figures; not kept in the report's events
            t = round(time.monotonic() - self.t0, 3)
            self.on_event({"event": "round", "t": t, "iterations": done,
                           "seconds": seconds, "workers": figures})  # fmt: skip
        return answers

    def _recover(self, moved: list[int], buddies: dict[int, str | None]) -> None:
        """The moved blocks' values as their buddies kept them at the end of the last round
        (into the driver's x); a block whose buddy is gone too keeps the last gather's."""
        asked: dict[str, list[int]] = {}
        for k in moved:
            buddy = buddies.get(k)
            if buddy is not None and buddy not in self.lost:
                asked.setdefault(buddy, []).append(k)
        got: dict[int, str] = {}
        for buddy, ids in asked.items():
            try:
                copies = self._wait(self.ex.submit(buddy, "copies", self.solve_id, 0, ids),
                                    buddy, "copies")  # fmt: skip
            except NodeLost:
                continue  # lost as well: the next round finds it
            for k, values in copies.items():
                self.x[self.plan.parts[k]] = values
                got[k] = buddy
        if got:
            self.stats.recovered_rows += sum(self.plan.parts[k].size for k in got)
            self.event("x_recovered", blocks=sorted(got), sources=sorted(set(got.values())))

    def gather(self, ids: list[int] | None = None) -> np.ndarray:
        """Blocks `ids` (default all) back into the driver's x; a block on a node lost meanwhile
        moves, and its values are the driver's copy it was sent with."""
        start = time.perf_counter()
        parts = self.plan.parts

        def submit(k: int) -> Job:
            return self.ex.submit(self.plan.node_of[k], "gather", self.solve_id, k, None)

        jobs = {k: submit(k) for k in (range(len(parts)) if ids is None else ids)}
        while jobs:
            k, job = next(iter(jobs.items()))
            try:
                self.x[parts[k]] = self._wait(job, k, "gather")
                del jobs[k]
            except NodeLost as lost:
                self._load(self._lose(lost))
                for kk, jj in list(jobs.items()):
                    if jj.node == lost.node:
                        jobs[kk] = submit(kk)
        self.stats.add("gather", time.perf_counter() - start)
        return self.x.copy()

    def peaks(self) -> dict[str, int]:
        """Each live worker's peak resident bytes (best effort: a worker that does not answer
        in time is left out)."""
        jobs = {n: self.ex.submit(n, "memory", self.solve_id, 0, None) for n in self.ex.nodes()}
        peaks: dict[str, int] = {}
        for slot, job in jobs.items():
            try:
                if job.wait(min(self.job_timeout, 10.0)):
                    peaks[slot] = int(job.outcome())
            except Exception:  # noqa: BLE001 -- a figure for the report, never the solve's outcome
                pass
        return peaks

    def drop(self) -> None:
        """Remove this solve's blocks from the nodes (best effort: the cluster may be gone)."""
        for n in list(self.ex.nodes()):
            try:
                job = self.ex.submit(n, "drop", self.solve_id, 0, None)
                job.wait(min(self.job_timeout, 10.0))
            except Exception:  # noqa: BLE001 -- cleanup must not hide the solve's own outcome
                pass


def solve(
    A,
    b: np.ndarray,
    executor: Executor,
    options: SolveOptions = DEFAULTS,
    *,
    x0: np.ndarray | None = None,
    parts: list[np.ndarray] | None = None,
    callback: Progress | None = None,
    checkpoint: Checkpoint | None = None,
    on_event: EventSink | None = None,
    poll_s: float = 1.0,
    backend: str = "cluster",
    keep: str = "",
    precut: Cut | None = None,
) -> SolveResult:
    """Distributed block-coloured SOR, or CG preconditioned by that sweep (cg-ssor). Same
    options, stopping rules, Ctrl-C behaviour and result as sorctl.solver.local.solve (both
    follow sorctl.solver.monitor), plus the distributed fields in `extra` (nodes, blocks,
    colours, bytes_per_iteration, compute_s, comm_s, events). On Ctrl-C the result is
    'interrupted' with the last gathered x; the caller closes the executor.
    Omega, when not given, is estimated on the workers' own rows once they are wired
    (sorctl.distributed.node_lanczos): no whole-matrix Lanczos here. `keep` (the system file's
    identity, e.g. its size and modification time): the nodes keep their blocks on disk, and a
    later solve of the same file and cut sends none of their rows. `precut`: A cut beforehand
    (while the cluster started), used when it was made for as many CPUs as the cluster has.
    """
    t0 = time.monotonic()
    options = options.for_cluster()
    cg = options.method == "cg-ssor"
    source = rows_of(A)
    b = np.asarray(b, dtype=np.float64)
    monitor = Monitor(b, options, callback)
    chosen = _given_omega(source, options)
    node_cpus = executor.nodes()
    if not node_cpus:
        raise ClusterError("the cluster has no nodes")
    cpus = len(slots_of(node_cpus))
    if precut is None or precut.cpus != cpus or parts is not None:
        precut = cut(source, cpus, options.blocks, parts, pipelined=cg)
    p = place(precut, node_cpus)
    x = np.zeros(source.n) if x0 is None else np.array(x0, dtype=np.float64)
    timings = {"plan_s": time.monotonic() - t0}

    sums = cg or chosen is None
    run = _Runner(executor, p, source, b, x, options.job_timeout_s, poll_s, on_event, t0, sums)
    if keep:
        run.system_key = _system_key(keep, source.indptr)
    _place(run, node_cpus, timings)
    if chosen is None:
        chosen = _estimate_on_workers(run, source.n, options.method, timings)
    relax, omega_source, omega_extra = _relaxation(chosen, p, cg)
    reason, x = _Rounds(run, executor, monitor, options, relax).until_stop(checkpoint, timings)
    # the workers may be mid-round after Ctrl-C: no peaks asked then
    peaks = run.peaks() if reason != "interrupted" else {}
    if reason != "interrupted":
        run.drop()
    return monitor.result(
        x,
        reason,
        omega=relax,
        omega_source=omega_source,
        nnz=sum(blk.nnz for blk in p.blocks),
        timings=timings,
        backend=backend,
        extra={**omega_extra, **_figures(run, node_cpus, options.inner_sweeps, peaks)},
    )


def _given_omega(source: RowSource, options: SolveOptions) -> tuple[float, str, dict] | None:
    """The user's omega, checked at once; for a matrix small enough for the exact spectrum, the
    estimate now; else None: the workers estimate it (_estimate_on_workers)."""
    choose = choose_ssor_omega if options.method == "cg-ssor" else choose_omega
    if options.omega is not None:
        return choose(None, options.omega)
    if source.n <= DENSE_EXACT_N:
        return choose(source.matrix(), None)
    return None


class _Rewired(Exception):
    """A node was lost during the omega estimate: its run starts again on the new wiring."""


def _estimate_on_workers(run: _Runner, n: int, method: str, timings: dict[str, float]):
    """The method's omega rule on Lanczos extremes whose steps run on the workers (each on its
    own rows, sums among themselves), as the local estimate's loop takes them."""
    t = time.monotonic()
    rule = rule_of(method)
    while True:
        started = False

        def steps(k: int) -> tuple[list[float], list[float]]:
            nonlocal started
            out = run.lanczos(k, None if started else LANCZOS_SEED)
            if out is None:
                raise _Rewired
            started = True
            return out

        try:
            lo, hi = settled_extremes(steps, lanczos_steps(n), rule.gap_of, rule.settle_rtol)
            break
        except _Rewired:
            continue
    run.lanczos_end()
    timings["omega_s"] = time.monotonic() - t
    run.event("omega", steps=run.stats.lanczos_steps, seconds=round(timings["omega_s"], 3))
    return rule.choice(lo, hi)


def _place(run: _Runner, node_cpus: dict[str, int], timings: dict[str, float]) -> None:
    """Blocks to their workers, workers wired to each other; the `placed` event."""
    t = time.monotonic()
    run.start()
    timings["load_s"] = time.monotonic() - t
    p = run.plan
    run.event(
        "placed", blocks=len(p.parts), colours=p.ncolours, order=p.order, nodes=sorted(node_cpus)
    )


def _relaxation(chosen, p: Plan, cg: bool):
    """(omega, its source, its extra report fields) as the order of the sweep takes it."""
    relax, omega_source, omega_extra = chosen
    if cg and omega_source == "estimated" and not p.pipelined and len(p.parts) > p.ncolours:
        # blocks of one colour sweep at once: not one machine's order (see the constant)
        relax = min(relax, BLOCK_COLOURED_SSOR_OMEGA_MAX)
    return relax, omega_source, omega_extra


class _Rounds:
    """Rounds of iterations, each ending in a residual check, until a stopping rule holds; a
    met tolerance is confirmed on the gathered x, and checkpoints are written on the way."""

    def __init__(
        self, run: _Runner, executor: Executor, monitor: Monitor, options: SolveOptions,
        relax: float,
    ) -> None:  # fmt: skip
        self.run = run
        self.ex = executor
        self.monitor = monitor
        self.options = options
        self.relax = relax
        self.cg = options.method == "cg-ssor"
        self.ssor = options.method == "ssor"
        self.sweeps = options.inner_sweeps
        self.restart = True  # CG: start (again) from x as it is, r = b - A x
        self.losses_told = 0  # CG: the node losses whose restart a cg_restart event told

    def measure(self) -> float:
        """||b - A x|| now (a round of no iterations), through any node losses."""
        run = self.run
        while True:
            r = (
                run.iterate(0, self.relax, self.sweeps, self.ssor)
                if not self.cg
                else _first(run.iterate_cg(0, self.relax, math.inf, False))
            )
            if r is not None:
                return r

    def one_round(self, steps: int) -> str | None:
        """A round of `steps` iterations (CG: at most) and its check: the reason to stop."""
        run, monitor = self.run, self.monitor
        if not self.cg:
            r = run.iterate(steps, self.relax, self.sweeps, self.ssor)
            self.ex.health()  # workers answer without the scheduler, but the cluster is broken
            return monitor.check(monitor.iterations + steps, self.measure() if r is None else r)
        out = run.iterate_cg(steps, self.relax, monitor.estimate_target(), self.restart)
        self.ex.health()
        if len(run.lost) > self.losses_told:
            # a node lost in this round, in its wiring, or at a gather before it (the final one,
            # a checkpoint's): the new wiring restarts CG from the gathered x
            self.losses_told = len(run.lost)
            run.event("cg_restart", iteration=monitor.iterations)
        if out is None:
            return monitor.check(monitor.iterations, self.measure())
        r, rr, done, breakdown = out
        reason = monitor.check(monitor.iterations + done, r)
        monitor.calibrate(rr)
        self.restart = done == 0  # the recursion stalled (r = 0 but x not converged): start over
        return "diverged" if reason is None and breakdown else reason

    def until_stop(
        self, checkpoint: Checkpoint | None, timings: dict[str, float]
    ) -> tuple[str, np.ndarray]:
        """(the reason to stop, x): gathered, or on Ctrl-C the driver's last copy."""
        run, monitor, options = self.run, self.monitor, self.options
        last_ckpt = time.monotonic()
        t_iter = time.monotonic()
        try:
            reason = monitor.check(0, self.measure())
            self.losses_told = len(run.lost)  # lost before CG started: nothing to restart
            while True:
                if reason in ("rtol", "atol"):
                    x = run.gather()
                    # measured again on the workers, which hold the gathered x (a node lost
                    # since: its blocks hold the driver's older copy, gathered as they are)
                    reason = monitor.correct(self.measure())
                    if reason in ("rtol", "atol"):
                        break
                    run.event("recheck", residual=monitor.residuals[-1])  # go on from x as it is
                if reason is not None:
                    break
                # a round of iterations ends with a residual check (the workers compute it with
                # their last halos, no extra messages for SOR; one x halo exchange for CG)
                reason = self.one_round(monitor.gap(cap=_round_cap(run.stats)))
                if (
                    checkpoint
                    and time.monotonic() - last_ckpt >= options.checkpoint_every_s
                    and math.isfinite(monitor.residuals[-1])
                ):
                    checkpoint(run.gather(), monitor.iterations, monitor.residuals[-1])
                    last_ckpt = time.monotonic()
            if reason in ("maxiter", "diverged"):
                x = run.gather()
        except KeyboardInterrupt:
            # the workers may be mid-round: no gather; closing the computation drops the blocks
            reason = "interrupted"
            x = run.x.copy()
        finally:
            timings["iterate_s"] = time.monotonic() - t_iter
        return reason, x


def _figures(
    run: _Runner, node_cpus: dict[str, int], sweeps: int, peaks: dict[str, int]
) -> dict[str, Any]:
    """The distributed fields of the report: the cluster, the cut, where the time went, each
    process's peak memory (this one, the client, and the workers') and the bytes of A sent."""
    st = run.stats
    p = run.plan
    iterate_wall = st.wall.get("iterate", 0.0)
    return {
        "nodes": len({machine(slot) for slot in node_cpus}),
        "node_cpus": node_cpus,
        "blocks": len(p.parts),
        "colours": p.ncolours,
        "order": p.order,
        "inner_sweeps": sweeps,
        "bytes_per_iteration": round(st.sent_bytes / max(st.iterations, 1)),
        "block_data_bytes": sum(blk.nbytes for blk in p.blocks),
        "rows_reread": st.rows_reread,
        "kept_blocks": st.kept_blocks,
        "recovered_rows": st.recovered_rows,
        "made_rows": st.made_rows,
        "compute_s": st.compute,
        "comm_s": max(iterate_wall - st.compute, 0.0),
        "wire_s": st.wall.get("wire", 0.0),
        "check_s": st.wall.get("residual", 0.0),
        "workers": {
            slot: {k: round(v, 6) for k, v in w.items() if k != "r2"}
            for slot, w in sorted(st.per_worker.items())
        },
        "gather_s": st.wall.get("gather", 0.0),
        "rounds": dict(st.rounds),
        "events": st.events,
        "memory": {"client": peak_rss_bytes(), "workers": dict(sorted(peaks.items()))},
        "a_bytes": {
            "client_to_workers": dict(sorted(st.block_bytes.items())),
            "total": sum(st.block_bytes.values()),
        },
    }


PIECES_IN_FLIGHT_BYTES = 32 << 20  # rows of A sent and not yet taken in by their workers
LOOK_AROUND_S = 0.2  # while waiting on one worker, how often to check on the others
LANCZOS_SEED = 0  # the omega estimate's start vector: the same run for the same system
ROUND_S = 10.0  # a round of iterations should end about this soon (progress, Ctrl-C, timeouts)


def _buddy_of(slot: str, workers: list[str]) -> str | None:
    """The worker that keeps a copy of `slot`'s blocks' values (the next one in order)."""
    if slot not in workers or len(workers) < 2:
        return None
    return workers[(workers.index(slot) + 1) % len(workers)]


def _system_key(keep: str, indptr: np.ndarray) -> str:
    """The system part of the nodes' block keys: the file's identity and its row pointer."""
    return hashlib.blake2b(keep.encode() + indptr.tobytes(), digest_size=10).hexdigest()


def _block_key(system_key: str, rows: np.ndarray) -> str:
    return f"{system_key}-{hashlib.blake2b(rows.tobytes(), digest_size=10).hexdigest()}"


def _round_cap(st: _Stats) -> int:
    """Iterations that fit in ROUND_S at the pace of the rounds so far."""
    if st.iterations == 0:
        return MAX_GAP
    per_iter = st.wall.get("iterate", 0.0) / st.iterations
    return max(1, int(ROUND_S / per_iter)) if per_iter > 0 else MAX_GAP


def _first(out: tuple | None) -> float | None:
    return None if out is None else out[0]
