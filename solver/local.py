"""The single-machine SOR driver: sweeps with a residual check now and then, and a SolveResult.

A residual check costs about one sweep (one pass over A), so the driver does not check after
every sweep. With check_every=None (the default) the gap between checks grows with the work
done -- max(MIN_GAP, iterations // 10), at most MAX_GAP -- which keeps checks to a few percent of
the time, and shrinks to the number of sweeps the last two checks predict are still needed, so
the reported iteration count is usually the exact sweep at which the tolerance was first met.
`iterations` is always the sweep count of the last check, and x is exactly that iterate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from solver.kernels import METHODS, make_sweeper, residual_norm
from solver.omega import estimate_omega
from solver.result import SolveResult

MIN_GAP = 10
MAX_GAP = 200
DIVERGENCE_FACTOR = 1e4  # residual grown this much over the start: diverged


def solve(
    A,
    b: np.ndarray,
    *,
    x0: np.ndarray | None = None,
    omega: float | None = None,
    rtol: float = 1e-8,
    atol: float = 0.0,
    maxiter: int = 10000,
    method: str = "sor",
    callback: Callable[[int, float], None] | None = None,
    check_every: int | None = None,
) -> SolveResult:
    """Solve A x = b by SOR sweeps (method 'sor', 'ssor' or 'multicolor').

    Stops when ||b - A x|| <= max(rtol ||b||, atol) (reason 'rtol' or 'atol'), after maxiter
    sweeps ('maxiter'), when the residual turns NaN/Inf or grows 1e4-fold ('diverged'), or on
    Ctrl-C ('interrupted', the last checked iterate). omega=None estimates it (Young's formula).
    callback(iteration, relative_residual) is called after every check.
    """
    t_start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if sp.issparse(A):
        A = sp.csr_matrix(A, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    n = A.shape[0]
    if b.shape != (n,):
        raise ValueError(f"b has shape {b.shape}, A is {A.shape[0]} x {A.shape[1]}")
    if omega is not None and not 0.0 < omega < 2.0:
        raise ValueError(f"omega must lie in (0, 2), got {omega}")
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64)
    extra: dict = {}
    timings: dict[str, float] = {}

    t = time.perf_counter()
    if omega is None:
        omega, rho = estimate_omega(A)
        omega_source = "estimated"
        extra["rho_jacobi"] = rho
        if rho >= 1.0:
            extra["omega_note"] = (
                f"Jacobi spectral radius {rho:.4g} >= 1: Young's formula does "
                f"not apply, using omega = {omega}"
            )
    else:
        omega_source = "user"
    timings["omega_s"] = time.perf_counter() - t

    t = time.perf_counter()
    sweep = make_sweeper(A, omega, method)
    timings["setup_s"] = time.perf_counter() - t

    norm_b = float(np.linalg.norm(b))
    if norm_b == 0.0:  # x = 0 solves it exactly (as scipy's cg answers b = 0)
        x[:] = 0.0
    scale = norm_b if norm_b > 0 else 1.0  # b = 0: residuals are absolute
    target = max(rtol * norm_b, atol)
    sweep_s = check_s = 0.0
    iterations = 0
    residuals: list[float] = []
    check_iterations: list[int] = []

    def check() -> float:
        nonlocal check_s
        t = time.perf_counter()
        r = residual_norm(A, b, x)
        check_s += time.perf_counter() - t
        residuals.append(r / scale)
        check_iterations.append(iterations)
        if callback is not None:
            callback(iterations, r / scale)
        return r

    reason = "maxiter"
    try:
        r = r0 = check()
        while True:
            if math.isfinite(r) and r <= target:
                reason = "rtol" if r <= rtol * norm_b else "atol"
                break
            if not math.isfinite(r) or r > DIVERGENCE_FACTOR * max(r0, 1e-300):
                reason = "diverged"
                break
            if iterations >= maxiter:
                reason = "maxiter"
                break
            gap = _next_gap(check_every, iterations, residuals, check_iterations, target / scale)
            gap = min(gap, maxiter - iterations)
            t = time.perf_counter()
            sweep(b, x, gap)
            sweep_s += time.perf_counter() - t
            iterations += gap
            r = check()
    except KeyboardInterrupt:
        reason = "interrupted"
    timings["sweeps_s"] = sweep_s
    timings["checks_s"] = check_s
    if iterations:
        timings["per_sweep_s"] = sweep_s / iterations
    extra["check_iterations"] = check_iterations
    return SolveResult(
        x=x,
        converged=reason in ("rtol", "atol"),
        reason=reason,
        iterations=iterations,
        residuals=residuals,
        omega=float(omega),
        omega_source=omega_source,
        n=n,
        nnz=int(A.nnz) if sp.issparse(A) else int(np.count_nonzero(A)),
        time_s=time.perf_counter() - t_start,
        timings=timings,
        backend="local",
        method=method,
        extra=extra,
    )


def _next_gap(check_every, iterations, residuals, at, target) -> int:
    """Sweeps until the next residual check (see the module docstring)."""
    if check_every is not None:
        return max(1, int(check_every))
    gap = min(MAX_GAP, max(MIN_GAP, iterations // 10))
    if len(residuals) >= 2 and at[-1] > at[-2] and 0 < residuals[-1] < residuals[-2]:
        rate = math.log(residuals[-1] / residuals[-2]) / (at[-1] - at[-2])  # per sweep, < 0
        if target > 0:
            needed = math.log(target / residuals[-1]) / rate
            gap = min(gap, max(1, math.ceil(needed)))
    return gap
