"""When a solve checks its residual and when it stops: the rules the local and distributed
drivers share.

A residual check costs about one sweep (one pass over A), so neither driver checks after every
sweep. With check_every=None the gap between checks grows with the work done --
max(MIN_GAP, iterations // 10), at most MAX_GAP -- which keeps checks to a few percent of the
time, and shrinks to the number of sweeps the last two checks predict are still needed, so the
reported iteration count is usually the exact sweep at which the tolerance was first met.
"""

from __future__ import annotations

import math

MIN_GAP = 10
MAX_GAP = 200
DIVERGENCE_FACTOR = 1e4  # residual grown this much over the start: diverged


def next_gap(check_every, iterations, residuals, at, target) -> int:
    """Sweeps until the next residual check (`at`: the iteration of each residual)."""
    if check_every is not None:
        return max(1, int(check_every))
    gap = min(MAX_GAP, max(MIN_GAP, iterations // 10))
    if len(residuals) >= 2 and at[-1] > at[-2] and 0 < residuals[-1] < residuals[-2]:
        rate = math.log(residuals[-1] / residuals[-2]) / (at[-1] - at[-2])  # per sweep, < 0
        if target > 0:
            needed = math.log(target / residuals[-1]) / rate
            gap = min(gap, max(1, math.ceil(needed)))
    return gap


def diverged(r: float, r0: float) -> bool:
    """NaN/Inf, or grown DIVERGENCE_FACTOR-fold over the first residual."""
    return not math.isfinite(r) or r > DIVERGENCE_FACTOR * max(r0, 1e-300)


def exhausted(r: float, r0: float, iterations: int, maxiter: int) -> str | None:
    """Why a solve that has not met its tolerance must stop now ('diverged', 'maxiter'), or None."""
    if diverged(r, r0):
        return "diverged"
    if iterations >= maxiter:
        return "maxiter"
    return None
