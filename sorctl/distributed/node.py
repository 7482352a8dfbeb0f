"""Node side of the distributed solve: a worker that holds blocks in memory and answers the
driver's requests, for SOR/SSOR and for cg-ssor.

One worker process per node CPU lives for the whole solve (a long-running dispy job: `serve`).
A block's rows of A arrive once, in pieces as the driver reads them (`load_begin`, `load_piece`,
`load_end`: sorctl.distributed.blocks.Assembly makes the block as they come), or the worker makes
them itself from a grid's stencil (`load_grid`, sorctl.distributed.rows.GridRows); they stay in the
worker's memory with the block's current values. The driver then wires the workers to
each other (sorctl.distributed.mesh) and asks each for whole runs of outer iterations
(`iterate`): a worker sweeps its blocks in the order of sorctl.distributed.schedule, waits only
for the values its next block reads, sends each block's new values straight to the workers that
read them, and answers with its share of the residual. `iterate_cg` runs rounds of CG instead
(sorctl.distributed.node_cg on coloured blocks, node_pipeline on pipelined strips), with the
sweeps, exchanges and sums of the BlockStore here. `warm` compiles every kernel a worker uses.
Plain anonymous memory, not files: a file-backed mapping of x written every sweep made the
kernel about twice as slow in a node container (dirty-page write-back and write faults).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sorctl.distributed import node_cg, node_lanczos, node_pipeline, schedule
from sorctl.distributed.blocks import Assembly, kept
from sorctl.distributed.mesh import DRIVER, Mesh, tune_socket
from sorctl.distributed.node_block import Block, residual_norm, round_figures, set_halo, split_of
from sorctl.distributed.node_cache import BlockCache
from sorctl.solver.generated import Grid
from sorctl.solver.kernels import eisenstat, vectors
from sorctl.solver.kernels.csr import Split as SplitArrays
from sorctl.solver.kernels.csr import (
    sor_backward,
    sor_backward_rows,
    sor_forward,
    sor_forward_rows,
    split_matvec,
    split_residual_norm2,
    split_tridiagonal,
)
from sorctl.solver.peak_memory import peak_rss_bytes

Send = tuple[int, np.ndarray, str]  # (to block, local rows, slot of its worker or "" if here)
LINK_TIMEOUT_S = 60.0  # for the other workers of a wiring to link up


class Interrupted(Exception):
    """The driver spoke during a run (it lost a node and will rewire): stop where we are."""


def warm() -> None:
    """Compile (or load from numba's cache) the kernels for the argument types blocks use:
    int32 indices, float64 values (blocks beyond 2**31 entries compile on first use)."""
    indptr = np.array([0, 1], dtype=np.int32)
    indices = np.array([0], dtype=np.int32)
    one = np.ones(1)
    x = np.zeros(2)
    split: SplitArrays = split_tridiagonal(indptr, indices, one, 1)
    assembly = Assembly(np.array([0]), 1, 1)  # a block made from its pieces, as at load
    assembly.add(np.array([0]), indptr, indices, one)
    assembly.finish()
    sor_forward(*split, one, x, 1.0, 1)
    sor_backward(*split, one, x, 1.0, 1)
    sor_forward_rows(*split, one, x, 1.0, 0, 1)
    sor_backward_rows(*split, one, x, 1.0, 0, 1)
    split_residual_norm2(*split, one, x)
    split_matvec(*split, x, np.zeros(1))
    vectors.dots_rz_rr(one, x, 1)
    vectors.dot(one, x, 1)
    vectors.direction(one, x, 1.0, 1)
    vectors.step(1.0, one, one, x, np.zeros(1), 1)
    # the omega estimate (sorctl.distributed.node_lanczos)
    vectors.lanczos_products(one, one.copy(), one, one.copy(), 0.0, np.zeros(2), x.copy())
    vectors.lanczos_next(one, one.copy(), one.copy(), one.copy(), np.zeros(2), 0.0, 1.0)
    # pipelined cg-ssor (sorctl.distributed.node_pipeline): triangles of a block with a halo
    rank = np.arange(2, dtype=np.int64)
    fptr, fidx, fval, lower, _, upper = (a.copy() for a in split)  # rewritten in place
    mid = eisenstat.partition_scaled(fptr, fidx, fval, lower, upper, x, rank)
    tri = (fptr, mid, fidx, fval, lower, upper)
    t, s = np.zeros(2), np.zeros(2)
    eisenstat.backward_direction_rows(*eisenstat.upper_of(tri), 1.0, one, one.copy(), 0.0, t, 0, 1)
    eisenstat.forward_apply_rows(*eisenstat.lower_of(tri), 1.0, one, t, s, 0, 1)
    eisenstat.scaled_residual(fptr, fidx, fval, lower, upper, x, one, x, np.zeros(1))
    eisenstat.scaled_residual(fptr, fidx, fval, lower, upper, x, one, x, np.empty(0))
    eisenstat.cg_update(1.0, t, s, np.zeros(1), np.zeros(1))


@dataclass
class Wiring:
    """What this worker's blocks wait for and where their values go, in one epoch."""

    epoch: int
    colour: dict[int, int]  # every block this worker holds or hears from
    ncolours: int
    recvs: dict[tuple[int, int], np.ndarray]  # (from, to) -> halo slots of `to`
    remote: list[tuple[int, int]]  # the (from, to) links that arrive by message
    into: dict[int, list[tuple[int, int]]]  # the remote links into each block
    # per (block, backward): the remote sends due part-way through a sweep, as (row where the
    # sweep has passed every row they carry, sends) in sweep order, and the sends due at its end
    early: dict[tuple[int, bool], list[tuple[int, list[Send]]]]
    late: dict[tuple[int, bool], list[Send]]
    sends: dict[int, list[Send]] = field(default_factory=dict)  # every send of each block
    workers: list[str] = field(default_factory=list)  # every worker slot of the wiring (CG sums)
    step: int = 0
    # messages applied per (vector, from, to): "xext" for sweeps and x exchanges, "zext", "pext"
    got: dict[tuple[str, int, int], int] = field(default_factory=dict)
    exchanged: dict[str, int] = field(default_factory=dict)  # whole-vector exchanges per vector
    sums: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # CG partial sums by seq
    seq: int = 0  # CG sums started in this wiring
    cg: dict[str, Any] = field(default_factory=dict)  # CG's scalars (sorctl.distributed.node_cg)
    lanczos: dict[str, Any] = field(default_factory=dict)  # the omega estimate's (node_lanczos)
    # pipelined strips (sorctl.distributed.pipeline; block k is strip k): chunk bounds, and
    # per link (forward?, piece pointers, pieces needed before each chunk, chunk -> piece)
    pipe: dict[str, Any] | None = None
    passes: dict[str, int] = field(default_factory=dict)  # pipelined passes per vector
    buddy: str | None = None  # the worker that keeps a copy of this one's blocks' values
    keeps_for: list[str] = field(default_factory=list)  # the workers this one is the buddy of
    copy_round: int = 0  # rounds whose values this worker sent its buddy
    acked: int = 0  # the last of them the buddy took in
    heard: dict[str, int] = field(default_factory=dict)  # per worker kept for: its last round


class BlockStore:
    """The blocks one worker holds: (solve id, block number) -> arrays, plus xext, the block's
    values followed by one unused slot and its halo values (see sorctl.distributed.blocks).

    `make_mesh(keypem)` opens this worker's listening port for links to the other workers;
    `driver` is the driver's connection, watched during a run for an interruption."""

    def __init__(self, make_mesh: Callable[[str], Mesh], driver: Any = None) -> None:
        self.blocks: dict[tuple[str, int], Block] = {}
        self.loading: dict[tuple[str, int], tuple] = {}  # blocks on their way, being made
        self.cache = BlockCache()  # blocks kept on this node's disk for the next solve
        # (solve, block) -> its values at the end of its worker's last round (we are its buddy)
        self.copies: dict[tuple[str, int], np.ndarray] = {}
        self.wiring: dict[str, Wiring] = {}
        self.mesh: Mesh | None = None
        self._make_mesh = make_mesh
        self.driver = driver

    def run(self, op: str, solve_id: str, block_id: int, payload: Any) -> Any:
        """One request: load_begin | load_piece | load_grid | load_end | listen | wire | lanczos |
        lanczos_end | iterate | iterate_cg | gather | memory | abort | drop."""
        sid = str(solve_id)
        key = (sid, int(block_id))
        if op == "drop":
            for k in [k for k in self.blocks if k[0] == sid]:
                del self.blocks[k]
            for k in [k for k in self.loading if k[0] == sid]:
                del self.loading[k]
            for k in [k for k in self.copies if k[0] == sid]:
                del self.copies[k]
            self.wiring.pop(sid, None)
            return None
        if op == "abort":  # arrives after the run it interrupted; nothing left to stop
            return None
        if op == "memory":  # this worker process's peak resident bytes, asked at the end
            return peak_rss_bytes()
        if op == "load_begin":  # a block's rows, b and x; True: kept from an earlier solve
            rows, n, entries, b, x_b, keep_as = payload
            kept_before = self.cache.load(keep_as) if keep_as else None
            making = kept_before or Assembly(rows, n, entries)
            self.loading[key] = (making, rows, b, x_b, keep_as)
            return kept_before is not None
        if op == "load_piece":  # the block's next rows, in its sweep order
            self.loading[key][0].add(*payload)
            return None
        if op == "load_grid":  # a grid system's: this node makes the block's rows itself
            making, rows = self.loading[key][:2]
            for piece in Grid.from_dict(payload).chunks(rows):
                making.add(*piece)
            return None
        if op == "load_end":  # the block as made: the driver keeps its record
            making, rows, b, x_b, keep_as = self.loading.pop(key)
            if isinstance(making, Assembly):
                split, halo, nnz = making.finish()
                if keep_as:
                    self.cache.save(keep_as, split, halo, nnz)
            else:
                split, halo, nnz = making
            self.blocks[key], held = kept(split, halo, nnz, rows, b, x_b, payload)
            held.rows = rows[:0]  # the driver has them: not sent back
            return held
        if op == "listen":
            if self.mesh is None:
                self.mesh = self._make_mesh(payload or "")
            return self.mesh.address
        if op == "wire":
            return self._wire(sid, payload)
        if op == "lanczos":  # steps of the omega estimate
            return node_lanczos.lanczos(self, sid, *payload)
        if op == "lanczos_end":
            return node_lanczos.end(self, sid)
        if op == "iterate":
            answer = self._iterate(sid, *payload)
            self._send_copies(sid, payload[0])
            return answer
        if op == "iterate_cg":  # pipelined strips (their wiring has a `pipe`) or coloured blocks
            pipelined = self.wiring[sid].pipe is not None
            answer = (node_pipeline.iterate if pipelined else node_cg.iterate_cg)(
                self, sid, *payload
            )
            self._send_copies(sid, payload[0])
            return answer
        if op == "copies":  # the values kept for a lost worker's blocks
            self._drain(sid)
            return {k: self.copies[(sid, k)] for k in payload if (sid, k) in self.copies}
        if op == "gather":
            return self._block(key)["xext"][: self._block(key)["diag"].size].copy()
        raise ValueError(f"unknown request {op!r}")

    def _block(self, key: tuple[str, int]) -> Block:
        blk = self.blocks.get(key)
        if blk is None:
            raise LookupError(f"block {key[1]} of solve {key[0]} is not on this node")
        return blk

    def _wire(self, sid: str, w: dict[str, Any]) -> None:
        early, late = {}, {}
        for k, halo in w["halos"].items():
            blk = self._block((sid, k))
            set_halo(blk, halo)
            for vec in ("zext", "pext", *node_lanczos.VECTORS):  # CG's, the estimate's: afresh
                blk.pop(vec, None)
            for backward in (False, True):
                early[(k, backward)], late[(k, backward)] = _split_sends(
                    w["sends"].get(k, []), blk["diag"].size, backward
                )
        self.wiring[sid] = Wiring(
            epoch=w["epoch"],
            colour=w["colour"],
            ncolours=w["ncolours"],
            recvs=w["recvs"],
            remote=w["remote"],
            into={k: [lk for lk in w["remote"] if lk[1] == k] for k in w["halos"]},
            early=early,
            late=late,
            sends={k: list(w["sends"].get(k, [])) for k in w["halos"]},
            workers=list(w.get("workers", [])),
            pipe=w.get("pipe"),
            buddy=w.get("buddy"),
            keeps_for=list(w.get("keeps_for", [])),
        )
        if w["peers"]:
            if self.mesh is None:
                raise LookupError("wire before listen")
            self.mesh.connect(w["epoch"], w["peers"], LINK_TIMEOUT_S)

    def _iterate(
        self, sid: str, iterations: int, omega: float, sweeps: int, ssor: bool
    ) -> dict[str, float]:
        """`iterations` outer iterations of this worker's blocks, then ||b - A x||^2 over its
        rows (with every neighbour's latest values). Returns that and where the time went."""
        w = self.wiring[sid]
        mine = sorted(k for (s, k) in self.blocks if s == sid)
        stats = round_figures()
        plan = schedule.phases(w.ncolours, ssor)
        self.sweep_iterations(sid, w, mine, plan, iterations, omega, sweeps, stats)
        r2 = 0.0
        t0 = time.perf_counter()
        for k in mine:
            blk = self.blocks[(sid, k)]
            r2 += residual_norm(blk)
        stats["residual_s"] = time.perf_counter() - t0
        stats["send_s"] = self.send_seconds()
        return {"r2": float(r2), **stats}

    def send_seconds(self) -> float:
        """Seconds this worker's sender threads spent sending since the last round's answer
        (they run beside the sweep: this overlaps sweep_s and wait_s)."""
        return self.mesh.take_send_s() if self.mesh is not None else 0.0

    def sweep_iterations(
        self, sid: str, w: Wiring, mine: list[int], plan: list[tuple[int, bool]], iterations: int,
        omega: float, sweeps: int, stats: dict[str, float], rhs: str = "b", vec: str = "xext",
    ) -> None:  # fmt: skip
        """`iterations` outer iterations (the phases of `plan` in turn) of blocks `mine` on
        A vec = rhs, then wait until every neighbour's values of them are in."""
        by_colour = {c: [k for k in mine if w.colour[k] == c] for c in range(w.ncolours)}
        end = w.step + iterations * len(plan)
        for step in range(w.step, end):
            colour, backward = plan[step % len(plan)]
            for k in by_colour[colour]:
                self._await(sid, w, w.into.get(k, []), plan, step, stats, vec)
                self._sweep(sid, w, k, omega, sweeps, backward, stats, rhs, vec)
            w.step = step + 1
        self._await(sid, w, w.remote, plan, end, stats, vec)

    def _sweep(
        self, sid: str, w: Wiring, k: int, omega: float, sweeps: int, backward: bool,
        stats: dict[str, float], rhs: str = "b", vec: str = "xext",
    ) -> None:  # fmt: skip
        """Sweep block k (on A vec = rhs: x for SOR, CG's z) and pass its new values on. With
        one sweep, the rows a remote block reads go out as soon as the sweep has passed the last
        of them, not when it ends: the rows next to a neighbour are often at the start, and its
        worker can go on meanwhile."""
        blk = self.blocks[(sid, k)]
        arrays = (*split_of(blk), blk[rhs], blk[vec])
        n = blk["diag"].size
        t0 = time.perf_counter()
        if sweeps == 1:
            rows_kernel = sor_backward_rows if backward else sor_forward_rows
            at = n if backward else 0
            for cut, sends in w.early[(k, backward)]:
                lo, hi = (cut, at) if backward else (at, cut)
                rows_kernel(*arrays, omega, lo, hi)
                stats["sweep_s"] += time.perf_counter() - t0
                self._pass_on(sid, w, k, blk, sends, stats, vec)
                t0 = time.perf_counter()
                at = cut
            rows_kernel(*arrays, omega, *((0, at) if backward else (at, n)))
        else:
            (sor_backward if backward else sor_forward)(*arrays, omega, sweeps)
        stats["sweep_s"] += time.perf_counter() - t0
        late = w.late[(k, backward)]
        if sweeps > 1:  # rows are visited again: nothing was final before the last sweep ended
            late = [send for _, group in w.early[(k, backward)] for send in group] + late
        self._pass_on(sid, w, k, blk, late, stats, vec)

    def _pass_on(
        self, sid: str, w: Wiring, k: int, blk: Block, sends: list[Send], stats: dict[str, float],
        vec: str = "xext",
    ) -> None:  # fmt: skip
        """Block k's new values of `vec` to the blocks in `sends`: copied here, or sent."""
        for to, rows, slot in sends:
            values = blk[vec][rows]
            if slot:
                assert self.mesh is not None
                self.mesh.send(slot, (w.epoch, vec, k, to, values))
                stats["sent_bytes"] += values.nbytes
            else:
                self._apply(sid, w, vec, k, to, values)

    def _apply(self, sid: str, w: Wiring, vec: str, frm: int, to: int, values: np.ndarray) -> None:
        blk = self.blocks[(sid, to)]
        if vec not in blk:  # CG's z or p, arriving before this worker's first CG round
            blk[vec] = np.zeros(blk["xext"].size)
        blk[vec][blk["diag"].size + 1 + w.recvs[(frm, to)]] = values

    def _apply_piece(
        self, sid: str, w: Wiring, vec: str, frm: int, to: int, piece: int, values: np.ndarray
    ) -> None:
        blk = self.blocks[(sid, to)]
        if vec not in blk:  # sent before this worker's own pass made the vector
            blk[vec] = np.zeros(blk["xext"].size)
        assert w.pipe is not None
        ptr = w.pipe["links"][(frm, to)][1]
        slots = w.recvs[(frm, to)][ptr[piece] : ptr[piece + 1]]
        blk[vec][blk["diag"].size + 1 + slots] = values

    def send_piece(
        self, sid: str, w: Wiring, vec: str, k: int, to: int, slot: str, piece: int,
        values: np.ndarray, stats: dict[str, float],
    ) -> None:  # fmt: skip
        """Piece `piece` of block k's values of `vec` for block `to`: copied here, or sent."""
        if slot:
            assert self.mesh is not None
            self.mesh.send(slot, (w.epoch, "~" + vec, k, to, (piece, values)))
            stats["sent_bytes"] += values.nbytes
        else:
            self._apply_piece(sid, w, vec, k, to, piece, values)

    def await_pieces(
        self, sid: str, w: Wiring, vec: str, frm: int, to: int, need: int, stats: dict[str, float]
    ) -> None:
        """Take messages until the link frm -> to has brought `need` pieces of `vec` (in all)."""
        if w.got.get((vec, frm, to), 0) >= need:
            return
        t0 = time.perf_counter()
        while w.got.get((vec, frm, to), 0) < need:
            self._take(sid, w)
        stats["wait_s"] += time.perf_counter() - t0

    def exchange(self, sid: str, w: Wiring, vec: str, stats: dict[str, float]) -> None:
        """Every block's values of `vec` to the halos of the blocks that read them, and wait
        until the halos of this worker's blocks hold their neighbours' values in turn."""
        self.await_exchange(sid, w, vec, self.send_exchange(sid, w, vec, stats), stats)

    def send_exchange(self, sid: str, w: Wiring, vec: str, stats: dict[str, float]) -> int:
        """The sending half of exchange: returns the count await_exchange waits for (a worker
        can do other work, or sum, while the values travel)."""
        mine = sorted(k for (s, k) in self.blocks if s == sid)
        for k in mine:
            self._pass_on(sid, w, k, self.blocks[(sid, k)], w.sends.get(k, []), stats, vec)
        w.exchanged[vec] = w.exchanged.get(vec, 0) + 1
        return w.exchanged[vec]

    def await_exchange(
        self, sid: str, w: Wiring, vec: str, need: int, stats: dict[str, float]
    ) -> None:
        """The waiting half of exchange: until this worker's halos of `vec` hold exchange
        number `need`."""
        self._await_count(sid, w, vec, w.remote, need, stats)

    def allreduce(self, sid: str, w: Wiring, values: np.ndarray, stats: dict[str, float]):
        """The sum over every worker of `values` (this worker's partial sums): each worker sends
        its partial to all others and adds all of them in slot order, so every worker holds the
        same bits (CG's alpha and beta must agree everywhere) with no trip through the driver."""
        assert self.mesh is not None or len(w.workers) <= 1
        seq = w.seq
        w.seq += 1
        me = self.mesh.slot if self.mesh is not None else ""
        partials = w.sums.setdefault(seq, {})
        partials[me] = values
        for slot in w.workers:
            if slot != me:
                assert self.mesh is not None
                self.mesh.send(slot, (w.epoch, "sum", seq, me, values))
                stats["sent_bytes"] += values.nbytes
        t0 = time.perf_counter()
        while len(partials) < max(len(w.workers), 1):
            self._take(sid, w)
        stats["wait_s"] += time.perf_counter() - t0
        del w.sums[seq]
        total = np.zeros_like(values)
        for slot in sorted(partials):
            total = total + partials[slot]
        return total

    def _take(self, sid: str, w: Wiring) -> None:
        """Apply the next message from a peer (a halo, or a partial sum); Interrupted when the
        driver speaks first."""
        assert self.mesh is not None
        msg = self.mesh.recv(self.driver, 1.0)
        if msg is DRIVER:
            raise Interrupted("the driver stopped this run")
        if msg is None:
            return
        self._handle(sid, w, msg)

    def _handle(self, sid: str, w: Wiring, msg: tuple) -> None:
        epoch, kind, a, b, values = msg
        if epoch != w.epoch:
            return
        if kind == "copy":  # block a's values from the worker we are the buddy of
            self.copies[(sid, a)] = values
        elif kind == "copied":  # round a's copies of worker `values` all in: acknowledge them
            w.heard[values] = max(w.heard.get(values, 0), a)
            assert self.mesh is not None
            self.mesh.send(values, (w.epoch, "copies_taken", a, 0, None))
        elif kind == "copies_taken":
            w.acked = max(w.acked, a)
        elif kind == "sum":
            w.sums.setdefault(a, {})[b] = values
        elif kind.startswith("~"):  # a piece of a pipelined pass
            vec = kind[1:]
            self._apply_piece(sid, w, vec, a, b, *values)
            w.got[(vec, a, b)] = w.got.get((vec, a, b), 0) + 1
        else:
            self._apply(sid, w, kind, a, b, values)
            w.got[(kind, a, b)] = w.got.get((kind, a, b), 0) + 1

    def _send_copies(self, sid: str, iterations: int) -> None:
        """After a round of iterations: this worker's blocks' values to its buddy, and those
        of the workers it is the buddy of taken in, each side's acknowledged before the round
        is answered (a worker may be killed right after its answer; data it sent and its peer
        had not read may then be lost with the connection)."""
        w = self.wiring[sid]
        if iterations <= 0 or self.mesh is None or not (w.buddy or w.keeps_for):
            return
        w.copy_round += 1
        r = w.copy_round
        if w.buddy:
            for key, blk in self.blocks.items():
                if key[0] == sid:
                    x_b = blk["xext"][: blk["diag"].size].copy()
                    self.mesh.send(w.buddy, (w.epoch, "copy", key[1], r, x_b))
            self.mesh.send(w.buddy, (w.epoch, "copied", r, 0, self.mesh.slot))
        while (w.buddy and w.acked < r) or any(w.heard.get(s, 0) < r for s in w.keeps_for):
            self._take(sid, w)

    def _drain(self, sid: str) -> None:
        """Take every message already here (a buddy's last copies may be among them)."""
        w = self.wiring.get(sid)
        if w is None or self.mesh is None:
            return
        for msg in self.mesh.pending():
            self._handle(sid, w, msg)

    def _await_count(
        self, sid: str, w: Wiring, vec: str, links: list[tuple[int, int]], need: int,
        stats: dict[str, float],
    ) -> None:  # fmt: skip
        """Take messages until every link in `links` has brought `need` values of `vec`."""
        t0 = time.perf_counter()
        for frm, to in links:
            while w.got.get((vec, frm, to), 0) < need:
                self._take(sid, w)
        stats["wait_s"] += time.perf_counter() - t0

    def _await(
        self,
        sid: str,
        w: Wiring,
        links: list[tuple[int, int]],
        plan: list[tuple[int, bool]],
        step: int,
        stats: dict[str, float],
        vec: str = "xext",
    ) -> None:
        """Take messages until every link in `links` has brought its sender's sweeps of `vec`
        before `step`. No message can be early: a sender's next sweep waits for ours."""
        for frm, to in links:
            need = schedule.sweeps_before(w.colour[frm], plan, step)
            if w.got.get((vec, frm, to), 0) >= need:
                continue
            t0 = time.perf_counter()
            while w.got.get((vec, frm, to), 0) < need:
                self._take(sid, w)
            stats["wait_s"] += time.perf_counter() - t0


def _split_sends(
    sends: list[Send], size: int, backward: bool
) -> tuple[list[tuple[int, list[Send]]], list[Send]]:
    """(early, late) for a block of `size` rows swept one way (see Wiring.early)."""
    early: dict[int, list[Send]] = {}
    late: list[Send] = []
    for send in sends:
        rows = send[1]
        cut = (int(rows.min()) if backward else int(rows.max()) + 1) if rows.size else size
        if send[2] and 0 < cut < size:
            early.setdefault(cut, []).append(send)
        else:
            late.append(send)
    return sorted(early.items(), reverse=backward), late


def serve(
    address: tuple[str, int], authkey: bytes, worker: str, idle_s: float, cadata: str = ""
) -> int:
    """A worker: connect back to the driver and answer its requests until it hangs up.

    One dispy job per CPU for the whole solve, so a request costs a message each way on an open
    connection instead of a dispy job (a fork on the node and two hops through the scheduler).
    Returns the number of requests served. Ends on hang-up, on `idle_s` without a request, or
    when TCP keepalive finds the driver gone, so a vanished client never holds the CPU long.
    `cadata` (a TLS cluster's certificate, PEM text): connect over TLS checked against it, and
    link to the other workers over TLS too.
    """
    import socket
    from multiprocessing.connection import Client

    warm()
    where = (str(address[0]), int(address[1]))
    if cadata:
        from sorctl.distributed import tls_link

        conn: Any = tls_link.connect(where, authkey, cadata)
    else:
        conn = Client(where, authkey=authkey)
    tune_socket(conn.fileno())
    with socket.socket(fileno=os.dup(conn.fileno())) as s:
        host = s.getsockname()[0]  # the address the driver reaches: the other workers use it

    def make_mesh(keypem: str) -> Mesh:
        return Mesh(worker, host, authkey, cadata, keypem)

    store = BlockStore(make_mesh, conn)
    conn.send(("hello", worker))
    served = 0
    try:
        while conn.poll(idle_s):
            msg = conn.recv()
            if msg is None:
                break
            seq, op, solve_id, block_id, payload = msg
            try:
                reply = (seq, True, store.run(op, solve_id, block_id, payload))
            except Exception as exc:  # noqa: BLE001 -- the driver reports it
                reply = (seq, False, f"{type(exc).__name__}: {exc}")
            conn.send(reply)
            served += 1
    except (EOFError, OSError):
        pass
    finally:
        if store.mesh is not None:
            store.mesh.close()
        conn.close()
        store.cache.wait()  # the blocks kept for the next solve, written whole
    return served
