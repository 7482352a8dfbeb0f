"""Lanczos steps on a worker: the omega estimate on the distributed matrix.

The local estimate (sorctl.solver.omega) runs plain Lanczos on S = D^-1/2 A D^-1/2 over the
whole of A. Here each worker runs the same steps on its blocks' rows: S v = D^-1/2 A u with u =
D^-1/2 v, so only u needs a halo and no worker needs another's diagonal. A step waits once: its
three sums (v.w, w.w, v.v, from which alpha and |w - alpha v| follow) go to the other workers
(BlockStore.allreduce) while the halo values of D^-1/2 w and of u travel, and each worker then
makes the next u's halo itself, (D^-1/2 w - alpha u) / beta. Every worker holds the same
coefficients; the driver only collects them and computes the Ritz values
(omega.settled_extremes). The start vector is the local one's smooth part D^1/2 1 plus noise
drawn per block, so it needs no vector from the driver.

The run's state lives in the wiring: a new wiring (a node loss) starts the estimate again.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from sorctl.distributed.node_block import round_figures, split_of
from sorctl.solver.kernels import vectors
from sorctl.solver.kernels.csr import split_matvec
from sorctl.solver.omega import START_NOISE, breaks_down


def lanczos(store: Any, sid: str, steps: int, seed: int | None) -> dict[str, Any]:
    """Up to `steps` Lanczos steps (fewer on a breakdown); a seed starts the run afresh. Returns
    the steps' alphas and betas and where the time went."""
    w = store.wiring[sid]
    mine = sorted(k for (s, k) in store.blocks if s == sid)
    blocks = [store.blocks[(sid, k)] for k in mine]
    stats = round_figures()
    st = w.lanczos
    if seed is not None or not st:
        _start(store, sid, w, mine, blocks, 0 if seed is None else seed, stats)
    alphas: list[float] = []
    betas: list[float] = []
    for _ in range(steps):
        # A neighbour may send the next step's values before this worker has used this step's
        # (it needs only our sums): two sets of buffers in turn, never more than a step apart.
        g, h = GEXT[st["step"] % 2], HEXT[st["step"] % 2]
        st["step"] += 1
        t0 = time.perf_counter()
        part = np.zeros(3)
        for blk in blocks:
            split_matvec(*split_of(blk), blk["uext"], blk["lw"])
            part += vectors.lanczos_products(
                blk["diag"], blk["lw"], blk["lv"], blk["lv_old"], st["beta"], blk[g], blk[h]
            )
        stats["sweep_s"] += time.perf_counter() - t0
        # the halo values and the sums travel together: one wait per step, not three
        need = (store.send_exchange(sid, w, g, stats), store.send_exchange(sid, w, h, stats))
        vw, ww, vv = (float(v) for v in store.allreduce(sid, w, part, stats))
        store.await_exchange(sid, w, g, need[0], stats)
        store.await_exchange(sid, w, h, need[1], stats)
        alpha = vw  # v . (S v - beta v_old); then |w - alpha v|^2 from the same three sums
        beta = math.sqrt(max(ww - 2.0 * alpha * vw + alpha * alpha * vv, 0.0))
        alphas.append(alpha)
        betas.append(beta)
        if breaks_down(alpha, beta):
            break
        st["beta"] = beta
        t0 = time.perf_counter()
        for blk in blocks:
            vectors.lanczos_next(
                blk["diag"], blk["lw"], blk["lv"], blk["lv_old"], blk["uext"], alpha, beta
            )
            # the halo from the owners' own values of this step, never from our copy of u: the
            # recurrence would double its rounding every step (|alpha / beta| is about 2)
            m = blk["lv"].size + 1
            blk["uext"][m:] = (blk[g][m:] - alpha * blk[h][m:]) / beta
        stats["sweep_s"] += time.perf_counter() - t0
    stats["send_s"] = store.send_seconds()
    return {"alphas": alphas, "betas": betas, **stats}


# D^-1/2 w and D^-1/2 v (= u) with their halos, by the parity of the step
GEXT, HEXT = ("gext0", "gext1"), ("hext0", "hext1")
# a block's vectors while the estimate runs
VECTORS = ("lv", "lv_old", "lw", "uext", *GEXT, *HEXT)


def end(store: Any, sid: str) -> None:
    """The estimate is over: its vectors go (VECTORS: eight per block would outlive it)."""
    for (s, _), blk in store.blocks.items():
        if s == sid:
            for name in VECTORS:
                blk.pop(name, None)
    store.wiring[sid].lanczos.clear()


def _start(store: Any, sid: str, w: Any, mine: list[int], blocks: list, seed: int, stats) -> None:
    """v = (D^1/2 1 / its mean + noise) normalized, over every worker's rows at once."""
    # made in place, a vector at a time: the start holds no more than the steps will
    local = np.array([sum(float(np.sqrt(blk["diag"]).sum()) for blk in blocks), 0.0])
    local[1] = sum(blk["diag"].size for blk in blocks)
    total, rows = store.allreduce(sid, w, local, stats)
    mean = total / max(rows, 1.0)
    starts = []
    for k, blk in zip(mine, blocks, strict=True):
        v = np.sqrt(blk["diag"])
        v /= mean
        v += START_NOISE * np.random.default_rng([seed, k]).standard_normal(v.size)
        starts.append(v)
    norm2 = float(store.allreduce(sid, w, np.array([sum(float(v @ v) for v in starts)]), stats)[0])
    norm = math.sqrt(norm2)
    for blk, v in zip(blocks, starts, strict=True):
        v /= norm
        blk["lv"] = v
        blk["lv_old"] = np.zeros(v.size)
        blk["lw"] = np.empty(v.size)  # A u, then w in place (vectors.lanczos_products)
        for vec in ("uext", *GEXT, *HEXT):
            blk.setdefault(vec, np.zeros(blk["xext"].size))  # its halo may hold values already
        blk["uext"][: v.size] = (1.0 / np.sqrt(blk["diag"])) * v
    store.exchange(sid, w, "uext", stats)  # after this, each step brings the halos it needs
    w.lanczos.clear()
    w.lanczos.update(beta=0.0, step=0)
