"""When a solve checks its residual, when it stops, what it records, and the result it returns:
the one path the local and the distributed drivers share.

A residual check costs about one sweep (one pass over A), so neither driver checks after every
sweep. With check_every=None the gap between checks grows with the work done --
max(MIN_GAP, iterations // 10), at most MAX_GAP -- which keeps checks to a few percent of the
time, and shrinks to the number of sweeps the last two checks predict are still needed, so the
reported iteration count is usually the exact sweep at which the tolerance was first met.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from sorctl.options import SolveOptions
from sorctl.solver.result import SolveResult

MIN_GAP = 10
MAX_GAP = 200
DIVERGENCE_FACTOR = 1e4  # residual grown this much over the start: diverged

Callback = Callable[[int, float], None]


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


class Monitor:
    """Records each residual check (relative residual, its iteration, the callback) and says
    why to stop: 'rtol' or 'atol' (met), 'diverged', 'maxiter', or None to go on."""

    def __init__(self, b: np.ndarray, options: SolveOptions, callback: Callback | None) -> None:
        self.options = options
        self.callback = callback
        self.norm_b = float(np.linalg.norm(b))
        self.scale = self.norm_b if self.norm_b > 0 else 1.0  # b = 0: residuals are absolute
        self.target = max(options.rtol * self.norm_b, options.atol)
        self.residuals: list[float] = []  # ||b - A x|| / scale, one per check
        self.at: list[int] = []  # the iteration of each check
        self.r0: float | None = None
        self.t0 = time.perf_counter()
        self.estimate_scale = 1.0  # true / estimated residual norm at the last calibration

    @property
    def iterations(self) -> int:
        return self.at[-1] if self.at else 0

    def check(self, iterations: int, r: float) -> str | None:
        """Record ||b - A x|| = r after `iterations`; the reason to stop, or None."""
        self.residuals.append(r / self.scale)
        self.at.append(iterations)
        if self.r0 is None:
            self.r0 = r
        if self.callback is not None:
            self.callback(iterations, r / self.scale)
        return self.reason()

    def correct(self, r: float) -> str | None:
        """The last check measured again (a gathered x): replace it; the reason anew."""
        self.residuals[-1] = r / self.scale
        return self.reason()

    def calibrate(self, estimate: float) -> None:
        """Relate a cheap residual estimate (CG's recursive residual, whose norm drifts from
        ||b - A x|| by the preconditioner's scaling) to the last true check."""
        if estimate > 0 and self.residuals:
            self.estimate_scale = self.residuals[-1] * self.scale / estimate

    def estimate_met(self, estimate: float) -> bool:
        """The calibrated estimate reaches the target (or is NaN): time for a true check."""
        return not self.estimate_scale * estimate > self.target

    def estimate_target(self) -> float:
        """The uncalibrated estimate at which estimate_met turns true (for workers that watch
        the estimate themselves)."""
        return self.target / self.estimate_scale if self.estimate_scale > 0 else 0.0

    def reason(self) -> str | None:
        r = self.residuals[-1] * self.scale
        if math.isfinite(r) and r <= self.target:
            return "rtol" if r <= self.options.rtol * self.norm_b else "atol"
        if diverged(r, self.r0 if self.r0 is not None else r):
            return "diverged"
        if self.iterations >= self.options.maxiter:
            return "maxiter"
        return None

    def met(self) -> bool:
        return self.reason() in ("rtol", "atol")

    def gap(self, cap: int | None = None) -> int:
        """Sweeps until the next check: the adaptive rule, never past maxiter (nor `cap`)."""
        gap = next_gap(
            self.options.check_every,
            self.iterations,
            self.residuals,
            self.at,
            self.target / self.scale,
        )
        gap = min(gap, self.options.maxiter - self.iterations)
        return max(1, min(gap, cap) if cap is not None else gap)

    def result(
        self,
        x: np.ndarray,
        reason: str,
        *,
        omega: float,
        omega_source: str,
        nnz: int,
        timings: dict[str, float],
        backend: str,
        extra: dict[str, Any],
    ) -> SolveResult:
        """The SolveResult of a solve that stopped for `reason` ('interrupted' included)."""
        return SolveResult(
            x=x,
            converged=reason in ("rtol", "atol"),
            reason=reason,
            iterations=self.iterations,
            residuals=list(self.residuals),
            omega=float(omega),
            omega_source=omega_source,
            n=int(x.shape[0]),
            nnz=nnz,
            time_s=time.perf_counter() - self.t0,
            timings=timings,
            backend=backend,
            method=self.options.method,
            extra={**extra, "check_iterations": list(self.at)},
        )
