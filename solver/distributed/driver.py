"""The outer loop of the distributed solve: colours in turn, the blocks of a colour in parallel.

One outer iteration sweeps every colour once (SSOR: colours forward with forward sweeps, then
backward with backward sweeps). With one inner sweep this is exactly global SOR in the order
(colour, block, row) because blocks of one colour share no nonzero. The driver keeps a copy of x
whose interface values are always current (they come back from every sweep) and whose other
values are refreshed when the whole x is gathered (at the end and at checkpoints).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from solver.distributed.blocks import Block, build_blocks, payload_bytes
from solver.distributed.executor import ClusterFailed, Executor, Job, NodeLost, machine
from solver.distributed.partition import (
    block_graph,
    block_labels,
    colour_blocks,
    contiguous_blocks,
    place_blocks,
    slots_of,
)
from solver.errors import InputError
from solver.omega import choose_omega
from solver.result import SolveResult
from solver.stopping import exhausted, next_gap

METHODS = ("sor", "ssor")

Progress = Callable[[int, float], None]
Checkpoint = Callable[[np.ndarray, int, float], None]
EventSink = Callable[[dict[str, Any]], None]


@dataclass
class Plan:
    """How the rows are cut, coloured and placed."""

    blocks: list[Block]
    colour: np.ndarray
    node_of: list[str]

    @property
    def ncolours(self) -> int:
        return int(self.colour.max()) + 1 if self.colour.size else 0

    def colour_order(self) -> list[list[int]]:
        return [np.flatnonzero(self.colour == c).tolist() for c in range(self.ncolours)]


def plan(
    A: sp.csr_matrix,
    b: np.ndarray,
    node_cpus: dict[str, int],
    nblocks: int | None = None,
    parts: list[np.ndarray] | None = None,
) -> Plan:
    """Cut A into blocks (default: two per CPU, so each of two colours keeps every CPU busy),
    colour them and place them on the nodes. `parts` overrides the cut (tests use a row colouring).
    """
    if parts is None:
        cpus = sum(node_cpus.values())
        parts = contiguous_blocks(A, nblocks or 2 * max(cpus, 1))
    label = block_labels(A.shape[0], parts)
    colour = colour_blocks(block_graph(A, label, len(parts)))
    blocks = build_blocks(A, b, parts)
    node_of = place_blocks(
        [blk.nnz + blk.size for blk in blocks], colour.tolist(), slots_of(node_cpus)
    )
    return Plan(blocks, colour, node_of)


@dataclass
class _Stats:
    # Per kind of round (sweep, residual, gather): wall time, its critical path in the kernels
    # (the slowest job of each round), and the count. compute vs communication in the report is
    # over sweep rounds: the rest of a round's wall time is messages, pickling, waiting.
    wall: dict[str, float] = field(default_factory=dict)
    compute: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, op: str, wall: float, compute: float) -> None:
        self.wall[op] = self.wall.get(op, 0.0) + wall
        self.compute[op] = self.compute.get(op, 0.0) + compute
        self.rounds[op] = self.rounds.get(op, 0) + 1


class _Runner:
    """Runs rounds of jobs on the executor and moves blocks off nodes that are lost."""

    def __init__(
        self,
        executor: Executor,
        plan_: Plan,
        x: np.ndarray,
        job_timeout: float,
        poll_s: float,
        on_event: EventSink | None,
        t0: float,
    ) -> None:
        self.ex = executor
        self.plan = plan_
        self.x = x
        self.job_timeout = job_timeout
        self.poll_s = poll_s
        self.on_event = on_event
        self.t0 = t0
        self.stats = _Stats()
        self.solve_id = uuid.uuid4().hex[:16]
        self.lost: set[str] = set()

    def event(self, kind: str, **fields: Any) -> None:
        ev = {"event": kind, "t": round(time.monotonic() - self.t0, 3), **fields}
        self.stats.events.append(ev)
        if self.on_event:
            self.on_event(ev)

    # -- placing data -----------------------------------------------------------------------
    def load_all(self) -> None:
        self._load(list(range(len(self.plan.blocks))))

    def _load(self, ids: list[int]) -> None:
        """Send blocks to their nodes (a block's values are the driver's current copy)."""
        ids = list(dict.fromkeys(ids))
        while ids:
            jobs = {k: self._submit_load(k) for k in ids}
            ids = []
            for k, job in jobs.items():
                try:
                    self._wait(job, k, "load")
                except NodeLost as lost:
                    ids.extend(self._lose(lost))  # re-placed: send them again
                    ids.append(k)
            ids = list(dict.fromkeys(ids))

    def _submit_load(self, k: int) -> Job:
        blk = self.plan.blocks[k]
        payload = (blk.node_arrays(), self.x[blk.rows], blk.halo.size)
        return self.ex.submit(self.plan.node_of[k], "load", self.solve_id, k, payload)

    def _lose(self, lost: NodeLost) -> list[int]:
        """Forget the node and re-place its blocks on the least-loaded survivors; returns the
        blocks moved (their data is not sent yet)."""
        dead = lost.node
        moved = [k for k, n in enumerate(self.plan.node_of) if n == dead]
        if dead not in self.lost:
            self.lost.add(dead)
            self.ex.forget(dead)
            self.event("node_lost", node=dead, reason=lost.why, blocks=moved)
        alive = self.ex.nodes()
        if not alive:
            raise ClusterFailed(f"every node is gone (last lost: {dead}: {lost.why})")
        load = {n: 0.0 for n in alive}
        for k, n in enumerate(self.plan.node_of):
            if n in load:
                load[n] += self.plan.blocks[k].nnz / alive[n]
        for k in moved:
            to = min(load, key=lambda n: (load[n], n))
            load[to] += self.plan.blocks[k].nnz / alive[to]
            self.plan.node_of[k] = to
            self.event("block_moved", block=k, source=dead, target=to)
        return moved

    def _wait(self, job: Job, k: int, op: str) -> Any:
        """Wait for one job, never forever: poll, ask the executor whether the cluster still
        answers, and give up on the job after job_timeout (its node counts as lost)."""
        deadline = time.monotonic() + self.job_timeout
        while not job.wait(self.poll_s):
            self.ex.health()
            if time.monotonic() > deadline:
                raise NodeLost(
                    job.node, f"{op} job on block {k} gave no answer in {self.job_timeout:.0f} s"
                )
        return job.outcome()

    # -- rounds -------------------------------------------------------------------------------
    def round(self, op: str, ids: list[int], payload: Callable[[int], Any]) -> dict[int, Any]:
        """Run `op` on blocks `ids` at once; blocks on a lost node move and run again."""
        start = time.perf_counter()
        jobs = {
            k: self.ex.submit(self.plan.node_of[k], op, self.solve_id, k, payload(k)) for k in ids
        }
        results: dict[int, Any] = {}
        while jobs:
            k, job = next(iter(jobs.items()))
            try:
                results[k] = self._wait(job, k, op)
                del jobs[k]
            except NodeLost as lost:
                self._load(self._lose(lost))
                for kk, jj in list(jobs.items()):
                    if jj.node == lost.node:
                        jobs[kk] = self.ex.submit(
                            self.plan.node_of[kk], op, self.solve_id, kk, payload(kk)
                        )
        wall = time.perf_counter() - start
        slowest = max((r[1] for r in results.values() if isinstance(r, tuple)), default=0.0)
        self.stats.add(op, wall, slowest)
        return results

    def sweep_colour(self, ids: list[int], omega: float, sweeps: int, backward: bool) -> None:
        blocks = self.plan.blocks
        res = self.round("sweep", ids, lambda k: (self.x[blocks[k].halo], omega, sweeps, backward))
        for k, (vals, _) in res.items():
            blk = blocks[k]
            self.x[blk.rows[blk.iface]] = vals

    def residual_norm(self) -> float:
        blocks = self.plan.blocks
        ids = list(range(len(blocks)))
        res = self.round("residual", ids, lambda k: self.x[blocks[k].halo])
        return math.sqrt(sum(r2 for r2, _ in res.values()))

    def gather(self) -> np.ndarray:
        blocks = self.plan.blocks
        res = self.round("gather", list(range(len(blocks))), lambda k: None)
        for k, xb in res.items():
            self.x[blocks[k].rows] = xb
        return self.x.copy()

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
    *,
    x0: np.ndarray | None = None,
    omega: float | None = None,
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int = 10000,
    method: str = "sor",
    inner_sweeps: int = 1,
    nblocks: int | None = None,
    parts: list[np.ndarray] | None = None,
    check_every: int | None = None,
    callback: Progress | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_every_s: float = 30.0,
    on_event: EventSink | None = None,
    job_timeout: float = 600.0,
    poll_s: float = 1.0,
    backend: str = "cluster",
) -> SolveResult:
    """Distributed block-coloured SOR. Same stopping rules and result as solver.local.solve, plus
    the distributed fields in `extra` (nodes, blocks, colours, bytes_per_iteration, compute_s,
    comm_s, events). KeyboardInterrupt propagates; the caller closes the executor.
    """
    t0 = time.monotonic()
    if method not in METHODS:
        raise InputError(
            f"method {method!r} is not available on a cluster: choose one of {', '.join(METHODS)}"
        )
    if inner_sweeps < 1 or (check_every is not None and check_every < 1) or maxiter < 0:
        raise InputError("inner sweeps, check interval and max iterations must be positive")
    A = sp.csr_matrix(A) if not sp.issparse(A) or A.format != "csr" else A
    b = np.asarray(b, dtype=np.float64)
    n = A.shape[0]
    omega, omega_source, omega_extra = choose_omega(A, omega)
    node_cpus = executor.nodes()
    if not node_cpus:
        raise ClusterFailed("the cluster has no nodes")
    p = plan(A, b, node_cpus, nblocks, parts)
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64)
    timings = {"plan_s": time.monotonic() - t0}

    run = _Runner(executor, p, x, job_timeout, poll_s, on_event, t0)
    t = time.monotonic()
    run.load_all()
    timings["load_s"] = time.monotonic() - t
    run.event("placed", blocks=len(p.blocks), colours=p.ncolours, nodes=sorted(node_cpus))

    bnorm = float(np.linalg.norm(b))
    scale = bnorm if bnorm > 0 else 1.0
    target = max(rtol * bnorm, atol)
    colours = p.colour_order()
    iterations = 0
    residuals: list[float] = []
    checked_at: list[int] = []  # the iteration of each residual
    rel0 = run.residual_norm() / scale
    rel = rel0
    reason = ""
    last_ckpt = time.monotonic()
    t_iter = time.monotonic()
    try:
        while True:
            if rel * scale <= target:
                x = run.gather()
                true = _residual(A, b, x) / scale
                # the gathered x is the one measured, unless a node was lost since
                if true * scale <= target:
                    rel = true
                    reason = "rtol" if rel * scale <= rtol * bnorm else "atol"
                    break
                run.event("recheck", residual=true)  # go on from the x as it really is
                rel = true
            stop = exhausted(rel, rel0, iterations, maxiter)
            if stop:
                reason = stop
                break
            # the local solver's rule: checks spread out as the solve goes on (one round each)
            gap = next_gap(check_every, iterations, residuals, checked_at, target / scale)
            steps = min(gap, maxiter - iterations)
            for _ in range(steps):
                for ids in colours:
                    run.sweep_colour(ids, omega, inner_sweeps, backward=False)
                if method == "ssor":
                    for ids in reversed(colours):
                        run.sweep_colour(ids, omega, inner_sweeps, backward=True)
            iterations += steps
            executor.health()  # workers answer without the scheduler, but the cluster is broken
            rel = run.residual_norm() / scale
            residuals.append(rel)
            checked_at.append(iterations)
            if callback:
                callback(iterations, rel)
            if (
                checkpoint
                and time.monotonic() - last_ckpt >= checkpoint_every_s
                and math.isfinite(rel)
            ):
                checkpoint(run.gather(), iterations, rel)
                last_ckpt = time.monotonic()
        if reason in ("maxiter", "diverged"):
            x = run.gather()
    finally:
        timings["iterate_s"] = time.monotonic() - t_iter
    run.drop()
    if not residuals:
        residuals.append(rel)
        checked_at.append(iterations)
    else:
        residuals[-1] = rel
    sweeps_per_iter = 2 if method == "ssor" else 1
    st = run.stats
    extra = {
        **omega_extra,
        "nodes": len({machine(slot) for slot in node_cpus}),
        "node_cpus": node_cpus,
        "blocks": len(p.blocks),
        "colours": p.ncolours,
        "inner_sweeps": inner_sweeps,
        "check_iterations": checked_at,
        "bytes_per_iteration": payload_bytes(p.blocks) * sweeps_per_iter,
        "block_data_bytes": sum(blk.nbytes() for blk in p.blocks),
        "compute_s": st.compute.get("sweep", 0.0),
        "comm_s": st.wall.get("sweep", 0.0) - st.compute.get("sweep", 0.0),
        "check_s": st.wall.get("residual", 0.0),
        "gather_s": st.wall.get("gather", 0.0),
        "rounds": dict(st.rounds),
        "events": run.stats.events,
    }
    return SolveResult(
        x=x,
        converged=reason in ("rtol", "atol"),
        reason=reason,
        iterations=iterations,
        residuals=residuals,
        omega=omega,
        omega_source=omega_source,
        n=n,
        nnz=int(A.nnz),
        time_s=time.monotonic() - t0,
        timings=timings,
        backend=backend,
        method=method,
        extra=extra,
    )


def _residual(A: sp.csr_matrix, b: np.ndarray, x: np.ndarray) -> float:
    return float(np.linalg.norm(b - A @ x))
