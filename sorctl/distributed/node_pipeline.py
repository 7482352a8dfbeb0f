"""CG rounds on a worker whose blocks are pipeline strips: SSOR in A's own order, Eisenstat's form.

The strips (sorctl.distributed.pipeline) couple one way, so the triangular solves of
sorctl.solver.cg_ssor run on all of them at once, chunk by chunk, each strip a chunk or so
behind the one it reads from: the backward solve t = Uc^-1 p from the highest strip down, the
forward one s = Lc^-1 (p - (2/omega - 1) t) from the lowest up, and only t and s values cross
between strips, piece by piece as their chunks finish. An iteration is one pass over A per
worker (as on one machine) and CG's two inner products are summed among the workers. The
iterates are the local solver's (same order, same omega) to rounding.

Per block the worker keeps the unit-diagonal scaling S = D^-1/2 (halo included), the scaled
triangles (made at the first round of the block's split rows, in place, so its rows are held
once; the true residual is measured from them too), CG's r and p, and x_s = S^-1 x; x itself
(xext) is written back at the end of every round, where the true residual is measured, so
gathers and restarts see the current iterate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from sorctl.distributed.node_block import SPLIT, TRIANGLES, round_figures, split_of, triangles_of
from sorctl.distributed.node_cg import round_answer
from sorctl.solver.kernels import eisenstat


def iterate(
    store: Any, sid: str, iterations: int, omega: float, stop_below: float, restart: bool
) -> dict[str, float]:
    """As sorctl.distributed.node_cg.iterate_cg, for a pipelined wiring."""
    w = store.wiring[sid]
    mine = sorted(k for (s, k) in store.blocks if s == sid)
    stats = round_figures()
    done, breakdown = 0, False
    st = w.cg
    if iterations > 0:
        if restart or not st:
            _restart(store, sid, w, mine, omega, stats)

        def backward(k: int, blk: dict, lo: int, hi: int) -> float:
            """p <- r + beta p, t = Uc^-1 p on rows lo..hi-1 of block k."""
            upper = eisenstat.upper_of(triangles_of(blk))
            p, t = blk["p"], blk["text"]
            eisenstat.backward_direction_rows(*upper, omega, blk["r"], p, st["beta"], t, lo, hi)
            return 0.0

        def forward(k: int, blk: dict, lo: int, hi: int) -> float:
            """s = Lc^-1 (p - (2/omega - 1) t) on rows lo..hi-1; their share of p . (t + s)."""
            lower = eisenstat.lower_of(triangles_of(blk))
            p, t, s = blk["p"], blk["text"], blk["sext"]
            return float(eisenstat.forward_apply_rows(*lower, omega, p, t, s, lo, hi))

        while done < iterations and math.sqrt(st["rr"]) > stop_below:
            _pass(store, sid, w, mine, False, "text", backward, stats)
            pq_local = _pass(store, sid, w, mine, True, "sext", forward, stats)
            pq = float(store.allreduce(sid, w, np.array([pq_local]), stats)[0])
            if not pq > 0.0:  # not SPD (or NaN): CG cannot go on
                breakdown = True
                break
            alpha = st["rr"] / pq
            t0 = time.perf_counter()
            rr_local = 0.0
            for k in mine:
                blk = store.blocks[(sid, k)]
                rr_local += eisenstat.cg_update(
                    alpha, blk["text"], blk["sext"], blk["xs"], blk["r"]
                )
            stats["sweep_s"] += time.perf_counter() - t0
            rr = float(store.allreduce(sid, w, np.array([rr_local]), stats)[0])
            st["beta"], st["rr"] = rr / st["rr"], rr
            done += 1
        for k in mine:  # x = S x_s, for the check below, gathers and restarts
            blk = store.blocks[(sid, k)]
            n = blk["diag"].size
            np.multiply(blk["xs"], blk["scale"][:n], out=blk["xext"][:n])
    blocks = [store.blocks[(sid, k)] for k in mine]
    return round_answer(store, sid, w, blocks, done, breakdown, stats)


def _restart(store: Any, sid: str, w: Any, mine: list[int], omega: float, stats) -> None:
    """CG from the blocks' current x: r = Lc^-1 S (b - A x), p = 0 (a pipelined forward solve)."""
    st = w.cg
    if "scaled" not in st:  # once per wiring (every worker alike): the neighbours' diagonals
        for k in mine:
            blk = store.blocks[(sid, k)]
            n = blk["diag"].size
            d = blk.setdefault("dext", np.ones(blk["xext"].size))  # a neighbour's may be in
            d[:n], d[n] = blk["diag"], 1.0
        store.exchange(sid, w, "dext", stats)
        store.cache.wait()  # the split rows are rewritten in place: kept for the next solve first
        for k in mine:
            _make_triangles(store.blocks[(sid, k)], k, w.recvs)
        st["scaled"] = True
    store.exchange(sid, w, "xext", stats)
    for k in mine:  # g = S (b - A x) in p's place and t = 0 in t's: no vector more than CG's
        blk = store.blocks[(sid, k)]
        n, ext = blk["diag"].size, blk["xext"].size
        scale = blk["scale"]
        g = blk.setdefault("p", np.empty(n))
        fptr, _, fidx, fval, lower, upper = triangles_of(blk)
        eisenstat.scaled_residual(fptr, fidx, fval, lower, upper, scale, blk["b"], blk["xext"], g)
        blk["xs"] = blk["xext"][:n] / scale[:n]
        for vec in ("text", "sext"):
            blk.setdefault(vec, np.zeros(ext))
        blk["text"][:n] = 0.0

    def solve(k: int, blk: dict, lo: int, hi: int) -> float:
        lower = eisenstat.lower_of(triangles_of(blk))
        g, t, s = blk["p"], blk["text"], blk["sext"]
        return float(eisenstat.forward_apply_rows(*lower, omega, g, t, s, lo, hi))

    _pass(store, sid, w, mine, True, "sext", solve, stats)
    rr_local = 0.0
    for k in mine:
        blk = store.blocks[(sid, k)]
        n = blk["diag"].size
        r = blk.setdefault("r", np.empty(n))
        r[:] = blk["sext"][:n]
        rr_local += float(r @ r)
        blk["p"][:] = 0.0
    st["rr"] = float(store.allreduce(sid, w, np.array([rr_local]), stats)[0])
    st["beta"] = 0.0


def _pass(
    store: Any,
    sid: str,
    w: Any,
    mine: list[int],
    forward: bool,
    vec: str,
    step: Callable[[int, dict, int, int], float],
    stats: dict[str, float],
) -> float:
    """One pipelined solve of `vec` over this worker's blocks: chunk by chunk in sweep order,
    each block's chunk once the pieces it reads are in, and each finished chunk's pieces sent
    on at once. Returns the sum of step's answers."""
    pipe = w.pipe
    order = sorted(mine, reverse=not forward)  # block k is strip k
    nchunks = len(pipe["bounds"][mine[0]]) - 1 if mine else 0
    base = w.passes.get(vec, 0)  # pieces of earlier passes of `vec` in this wiring
    total = 0.0
    for c in range(nchunks) if forward else range(nchunks - 1, -1, -1):
        for k in order:
            for frm, to in w.into.get(k, []):
                way, ptr, need, _ = pipe["links"][(frm, to)]
                if way == forward:
                    store.await_pieces(sid, w, vec, frm, to, base * (len(ptr) - 1) + need[c], stats)
            blk = store.blocks[(sid, k)]
            lo, hi = pipe["bounds"][k][c], pipe["bounds"][k][c + 1]
            t0 = time.perf_counter()
            if hi > lo:
                total += step(k, blk, int(lo), int(hi))
            stats["sweep_s"] += time.perf_counter() - t0
            for to, rows, slot in w.sends.get(k, []):
                way, ptr, _, piece_of = pipe["links"][(k, to)]
                p = piece_of.get(c)
                if way == forward and p is not None:
                    store.send_piece(
                        sid, w, vec, k, to, slot, p, blk[vec][rows[ptr[p] : ptr[p + 1]]], stats
                    )
    w.passes[vec] = base + 1
    return total


def _make_triangles(blk: dict, k: int, recvs: dict) -> None:
    """Block k's scaled triangles and scale (its neighbours' diagonals are in "dext"), made
    once per block of its split rows, in place (all but the diagonal): the worker holds its rows
    once. A strip's triangles do not change with the wiring: values of lower strips always come
    before its rows, those of higher ones after."""
    dext = blk.pop("dext")
    if "tmid" in blk:
        return
    n, ext = blk["diag"].size, blk["xext"].size
    scale = 1.0 / np.sqrt(dext)
    del dext
    rank = np.empty(ext, dtype=np.int64)
    rank[: n + 1] = np.arange(n + 1)
    for (frm, to), slots in recvs.items():
        if to == k:
            rank[n + 1 + slots] = -1 if frm < k else ext + 1
    fptr, fidx, fval, lower, _, upper = split_of(blk)
    mid = eisenstat.partition_scaled(fptr, fidx, fval, lower, upper, scale, rank)
    for name in SPLIT:
        if name != "diag":
            del blk[name]
    blk.update(zip(TRIANGLES, (fptr, mid, fidx, fval, lower, upper), strict=True))
    blk["scale"] = scale
