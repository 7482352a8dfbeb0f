"""The single-machine driver: sweeps with a residual check now and then, and a SolveResult.

When to check, when to stop and what to record: sorctl.solver.monitor (shared with the
distributed driver). `iterations` is always the sweep count of the last check, and x is exactly
that iterate.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from sorctl.errors import InputError
from sorctl.options import DEFAULTS, SolveOptions
from sorctl.solver.cg_ssor import cg_ssor
from sorctl.solver.kernels import make_sweeper, residual_norm
from sorctl.solver.monitor import Callback, Monitor
from sorctl.solver.omega import choose_omega
from sorctl.solver.result import SolveResult


def solve(
    A,
    b: np.ndarray,
    options: SolveOptions = DEFAULTS,
    *,
    x0: np.ndarray | None = None,
    callback: Callback | None = None,
) -> SolveResult:
    """Solve A x = b by SOR sweeps (options.method 'sor', 'ssor' or 'multicolor'), or by CG
    with an SSOR preconditioner ('cg-ssor': sorctl.solver.cg_ssor, with its own omega rule).

    Stops when ||b - A x|| <= max(rtol ||b||, atol) (reason 'rtol' or 'atol'), after maxiter
    sweeps ('maxiter'), when the residual turns NaN/Inf or grows 1e4-fold ('diverged'), or on
    Ctrl-C ('interrupted', the last checked iterate). omega=None estimates it (Young's formula).
    callback(iteration, relative_residual) is called after every check.
    """
    if options.method == "cg-ssor":
        return cg_ssor(A, b, options, x0=x0, callback=callback)
    timings: dict[str, float] = {}
    if sp.issparse(A):
        A = sp.csr_matrix(A, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    n = A.shape[0]
    if b.shape != (n,):
        raise InputError(f"b has shape {b.shape}, A is {A.shape[0]} x {A.shape[1]}")
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64)
    monitor = Monitor(b, options, callback)

    t = time.perf_counter()
    omega, omega_source, extra = choose_omega(A, options.omega)
    timings["omega_s"] = time.perf_counter() - t

    t = time.perf_counter()
    sweep = make_sweeper(A, omega, options.method)
    timings["setup_s"] = time.perf_counter() - t

    if monitor.norm_b == 0.0:  # x = 0 solves it exactly (as scipy's cg answers b = 0)
        x[:] = 0.0
    sweep_s = check_s = 0.0

    def check(iterations: int) -> str | None:
        nonlocal check_s
        t = time.perf_counter()
        r = residual_norm(A, b, x)
        check_s += time.perf_counter() - t
        return monitor.check(iterations, r)

    try:
        reason = check(0)
        while reason is None:
            gap = monitor.gap()
            t = time.perf_counter()
            sweep(b, x, gap)
            sweep_s += time.perf_counter() - t
            reason = check(monitor.iterations + gap)
    except KeyboardInterrupt:
        reason = "interrupted"
    timings["sweeps_s"] = sweep_s
    timings["checks_s"] = check_s
    if monitor.iterations:
        timings["per_sweep_s"] = sweep_s / monitor.iterations
    return monitor.result(
        x,
        reason,
        omega=omega,
        omega_source=omega_source,
        nnz=int(A.nnz) if sp.issparse(A) else int(np.count_nonzero(A)),
        timings=timings,
        backend="local",
        extra=extra,
    )
