"""Lanczos steps on a worker: the omega estimate on the distributed matrix.

The local estimate (sorctl.solver.omega) runs plain Lanczos on S = D^-1/2 A D^-1/2 over the whole
of A. Here each worker runs the same steps on its blocks' rows: S v = D^-1/2 A u with
u = D^-1/2 v, so only u needs a halo (exchanged once per step, as CG's p is) and no worker needs
another's diagonal. A step's two inner products are summed among the workers themselves
(BlockStore.allreduce), so every worker holds the same coefficients; the driver only collects
them and computes the Ritz values (omega.settled_extremes). The start vector is the local one's
smooth part D^1/2 1 plus noise drawn per block, so it needs no vector from the driver.

The run's state lives in the wiring: a new wiring (a node loss) starts the estimate again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sorctl.distributed.node_block import matvec
from sorctl.solver.omega import START_NOISE, breaks_down


def lanczos(store: Any, sid: str, steps: int, seed: int | None) -> dict[str, Any]:
    """Up to `steps` Lanczos steps (fewer on a breakdown); a seed starts the run afresh. Returns
    the steps' alphas and betas and where the time went."""
    w = store.wiring[sid]
    mine = sorted(k for (s, k) in store.blocks if s == sid)
    blocks = [store.blocks[(sid, k)] for k in mine]
    stats = {"sweep_s": 0.0, "wait_s": 0.0, "residual_s": 0.0, "sent_bytes": 0.0, "send_s": 0.0}
    st = w.lanczos
    if seed is not None or not st:
        _start(store, sid, w, mine, blocks, 0 if seed is None else seed, stats)
    alphas: list[float] = []
    betas: list[float] = []
    for _ in range(steps):
        store.exchange(sid, w, "uext", stats)
        part = 0.0
        for blk in blocks:
            lw = blk["ls"] * matvec(blk, "uext") - st["beta"] * blk["lv_old"]
            blk["lw"] = lw
            part += float(blk["lv"] @ lw)
        alpha = float(store.allreduce(sid, w, np.array([part]), stats)[0])
        part = 0.0
        for blk in blocks:
            blk["lw"] -= alpha * blk["lv"]
            part += float(blk["lw"] @ blk["lw"])
        beta = math.sqrt(float(store.allreduce(sid, w, np.array([part]), stats)[0]))
        alphas.append(alpha)
        betas.append(beta)
        if breaks_down(alpha, beta):
            break
        st["beta"] = beta
        for blk in blocks:
            blk["lv_old"], blk["lv"] = blk["lv"], blk.pop("lw") / beta
            blk["uext"][: blk["lv"].size] = blk["ls"] * blk["lv"]
    stats["send_s"] = store.send_seconds()
    return {"alphas": alphas, "betas": betas, **stats}


VECTORS = ("ls", "lv", "lv_old", "lw", "uext")  # a block's vectors while the estimate runs


def end(store: Any, sid: str) -> None:
    """The estimate is over: its vectors go (five of them per block would outlive it)."""
    for (s, _), blk in store.blocks.items():
        if s == sid:
            for name in VECTORS:
                blk.pop(name, None)
    store.wiring[sid].lanczos.clear()


def _start(store: Any, sid: str, w: Any, mine: list[int], blocks: list, seed: int, stats) -> None:
    """v = (D^1/2 1 / its mean + noise) normalized, over every worker's rows at once."""
    sqrt_d = [np.sqrt(blk["diag"]) for blk in blocks]
    local = np.array([sum(float(s.sum()) for s in sqrt_d), sum(s.size for s in sqrt_d)])
    total, rows = store.allreduce(sid, w, local, stats)
    mean = total / max(rows, 1.0)
    starts = []
    for k, sd in zip(mine, sqrt_d, strict=True):
        noise = np.random.default_rng([seed, k]).standard_normal(sd.size)
        starts.append(sd / mean + START_NOISE * noise)
    norm2 = float(store.allreduce(sid, w, np.array([sum(float(v @ v) for v in starts)]), stats)[0])
    norm = math.sqrt(norm2)
    for blk, sd, v in zip(blocks, sqrt_d, starts, strict=True):
        blk["ls"] = 1.0 / sd
        blk["lv"] = v / norm
        blk["lv_old"] = np.zeros(sd.size)
        blk.setdefault("uext", np.zeros(blk["xext"].size))  # its halo may hold values already
        blk["uext"][: sd.size] = blk["ls"] * blk["lv"]
    w.lanczos.clear()
    w.lanczos["beta"] = 0.0
