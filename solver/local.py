"""The single-machine SOR driver: sweeps with a residual check now and then, and a SolveResult.

When to check and when to stop: solver.stopping (shared with the distributed driver).
`iterations` is always the sweep count of the last check, and x is exactly that iterate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from solver.kernels import METHODS, make_sweeper, residual_norm
from solver.omega import choose_omega
from solver.result import SolveResult
from solver.stopping import exhausted, next_gap


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
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    omega, omega_source, extra = choose_omega(A, omega)
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
            stop = exhausted(r, r0, iterations, maxiter)
            if stop:
                reason = stop
                break
            gap = next_gap(check_every, iterations, residuals, check_iterations, target / scale)
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
