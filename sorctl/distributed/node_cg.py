"""CG rounds on a worker: conjugate gradients preconditioned by the block-coloured SSOR sweep.

The preconditioner is one symmetric sweep of the blocks on A z = r from z = 0 -- colours forward
with forward sweeps, then back with backward sweeps, the SSOR outer iteration the workers already
run (sorctl.distributed.schedule) -- so z = M^-1 r with M the SSOR matrix of A in the (colour,
block, row) order: SPD for 0 < omega < 2. Each worker holds its blocks' parts of x, r, p, z and
q = A p; halos of z travel during the sweep as SOR's x does, halos of p once per iteration, and
CG's two inner products per iteration are summed among the workers themselves
(BlockStore.allreduce: every worker ends with the same bits). The driver only asks for a round of
iterations and hears the true residual ||b - A x|| at its end (x halos exchanged once per round).

CG's state lives in the wiring: a new wiring (the start, or a node loss that moved blocks)
restarts CG from the current x, as does the driver's `restart` (r = b - A x afresh).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from sorctl.distributed import schedule
from sorctl.distributed.node_block import matvec, residual_norm, round_figures, split_of
from sorctl.solver.kernels import vectors
from sorctl.solver.kernels.csr import split_matvec


def iterate_cg(
    store: Any, sid: str, iterations: int, omega: float, stop_below: float, restart: bool
) -> dict[str, float]:
    """Up to `iterations` CG iterations, fewer when the recursive residual norm falls to
    `stop_below` or the curvature p'Ap is not positive (A not SPD: 'breakdown'). Returns the
    worker's share of ||b - A x||^2 ('r2'), the global ||r||^2 of CG's recursion ('rr'), the
    iterations done and where the time went. iterations = 0: the residual alone, CG untouched."""
    w = store.wiring[sid]
    mine = sorted(k for (s, k) in store.blocks if s == sid)
    blocks = [store.blocks[(sid, k)] for k in mine]
    stats = round_figures()
    done, breakdown = 0, False
    st = w.cg
    if iterations > 0:
        if restart or not st:
            _restart(store, sid, w, blocks, stats)
        plan = schedule.phases(w.ncolours, True)
        while True:
            if not st["have_z"]:
                _precondition(store, sid, w, mine, blocks, plan, omega, stats)
                local = np.zeros(2)
                for blk in blocks:
                    local += vectors.dots_rz_rr(blk["r"], blk["zext"], blk["r"].size)
                st["rz"], st["rr"] = (float(v) for v in store.allreduce(sid, w, local, stats))
                st["have_z"] = True
            if done >= iterations or not math.sqrt(st["rr"]) > stop_below:
                break
            beta = 0.0 if st["rz_old"] is None else st["rz"] / st["rz_old"]
            t0 = time.perf_counter()
            for blk in blocks:
                vectors.direction(blk["zext"], blk["pext"], beta, blk["r"].size)
            stats["sweep_s"] += time.perf_counter() - t0
            store.exchange(sid, w, "pext", stats)
            t0 = time.perf_counter()
            pq_local = 0.0
            for blk in blocks:
                split_matvec(*split_of(blk), blk["pext"], blk["q"])
                pq_local += vectors.dot(blk["pext"], blk["q"], blk["r"].size)
            stats["sweep_s"] += time.perf_counter() - t0
            pq = float(store.allreduce(sid, w, np.array([pq_local]), stats)[0])
            if not pq > 0.0:  # not SPD (or NaN): CG cannot go on
                breakdown = True
                break
            alpha = st["rz"] / pq
            t0 = time.perf_counter()
            for blk in blocks:
                vectors.step(alpha, blk["pext"], blk["q"], blk["xext"], blk["r"], blk["r"].size)
            stats["sweep_s"] += time.perf_counter() - t0
            st["rz_old"], st["have_z"] = st["rz"], False
            done += 1
    return round_answer(store, sid, w, blocks, done, breakdown, stats)


def round_answer(
    store: Any, sid: str, w: Any, blocks: list, done: int, breakdown: bool, stats
) -> dict[str, float]:
    """A CG round's answer: x halos exchanged, this worker's share of ||b - A x||^2, CG's
    recursive ||r||^2, the iterations done, whether CG broke down, where the time went."""
    store.exchange(sid, w, "xext", stats)
    t0 = time.perf_counter()
    r2 = sum(residual_norm(blk) for blk in blocks)
    stats["residual_s"] = time.perf_counter() - t0
    stats["send_s"] = store.send_seconds()
    return {
        "r2": float(r2),
        "rr": float(w.cg.get("rr", math.nan)),
        "done": float(done),
        "breakdown": float(breakdown),
        **stats,
    }


def _restart(store: Any, sid: str, w: Any, blocks: list, stats) -> None:
    """r = b - A x from the blocks' current x; p = z = 0; the next iteration is a first one."""
    store.exchange(sid, w, "xext", stats)
    for blk in blocks:
        ext = blk["xext"].size
        r = blk["r"] = matvec(blk, "xext")
        np.subtract(blk["b"], r, out=r)  # in place: no third n-vector for a moment
        blk.setdefault("q", np.empty(r.size))
        # z's halo may hold a neighbour's first values already (and is 0 otherwise): keep it
        blk.setdefault("zext", np.zeros(ext))
        blk.setdefault("pext", np.zeros(ext))
    w.cg.clear()
    w.cg.update(have_z=False, rz_old=None, rz=0.0, rr=math.nan)


def _precondition(store, sid, w, mine, blocks, plan, omega: float, stats) -> None:
    """z = M^-1 r: one symmetric block-coloured sweep from z = 0, then the z halos back to 0
    for the next time (only once every neighbour's last values of this sweep are in, and before
    this worker's part of r.z goes out: no neighbour sweeps again before it has that)."""
    for blk in blocks:
        blk["zext"][: blk["r"].size] = 0.0
    store.sweep_iterations(sid, w, mine, plan, 1, omega, 1, stats, "r", "zext")
    for blk in blocks:
        blk["zext"][blk["r"].size :] = 0.0
