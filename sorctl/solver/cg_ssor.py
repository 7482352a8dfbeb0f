"""Conjugate gradients preconditioned by one SSOR sweep pair, with Eisenstat's trick.

The system is scaled to unit diagonal, A_s = S A S with S = D^-1/2 (SSOR preconditioning commutes
with that scaling, so the iterates are those of SSOR-PCG on A). Writing A_s = L + I + U and
Lc = I/omega + L, Uc = I/omega + U, CG runs on Lc^-1 A_s Uc^-1, and Eisenstat's identity
    Lc^-1 A_s Uc^-1 p = t + Lc^-1 (p - (2/omega - 1) t),   t = Uc^-1 p
makes each iteration one backward and one forward triangular solve (each over half of A) and no
matrix-vector product. x is carried in the scaled form x_s = S^-1 x: y += alpha p is
x_s += alpha t, so no final solve is needed.

The CG residual r = Lc^-1 S (b - A x) is not the true one: its norm, calibrated against the last
true check (Monitor.calibrate), is watched every iteration, and a true residual check
(||b - A x||, one pass over A) confirms convergence; checks are otherwise spaced as the SOR
driver spaces them (sorctl.solver.monitor).
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from sorctl.errors import InputError
from sorctl.options import DEFAULTS, SolveOptions
from sorctl.solver.kernels import eisenstat, residual_norm
from sorctl.solver.monitor import Callback, Monitor
from sorctl.solver.omega import choose_ssor_omega
from sorctl.solver.result import SolveResult


class _Preconditioned:
    """The operator Lc^-1 A_s Uc^-1 of one matrix and omega, in two steps (see eisenstat)."""

    def __init__(self, A, omega: float, s: np.ndarray) -> None:
        self.omega = omega
        if sp.issparse(A):
            parts = eisenstat.split_scaled(A.indptr, A.indices, A.data, s)
            self.lower, self.upper = eisenstat.lower_of(parts), eisenstat.upper_of(parts)
            self.dense = None
        else:
            self.dense = eisenstat.DenseEisenstat(A * s[:, None] * s[None, :], omega)

    def backward_direction(self, r, p, beta, t) -> None:
        """p <- r + beta p; t = Uc^-1 p."""
        if self.dense is not None:
            self.dense.backward_direction(r, p, beta, t)
        else:
            eisenstat.backward_direction(*self.upper, self.omega, r, p, beta, t)

    def forward_apply(self, p, t, s) -> float:
        """s such that t + s = Lc^-1 A_s Uc^-1 p; returns p . (t + s)."""
        if self.dense is not None:
            return self.dense.forward_apply(p, t, s)
        return eisenstat.forward_apply(*self.lower, self.omega, p, t, s)


def cg_ssor(
    A,
    b: np.ndarray,
    options: SolveOptions = DEFAULTS,
    *,
    x0: np.ndarray | None = None,
    callback: Callback | None = None,
) -> SolveResult:
    """Solve A x = b (A symmetric positive definite, CSR or dense) by SSOR-preconditioned CG.

    Stops as sorctl.solver.local.solve does (sorctl.solver.monitor): the true residual meets
    rtol/atol, maxiter CG iterations, NaN/Inf or 1e4-fold growth ('diverged'), Ctrl-C
    ('interrupted', the last iterate); also 'diverged' on a non-positive curvature p'Ap (A not
    SPD). omega=None: sorctl.solver.omega.ssor_omega of the estimated lambda_min(D^-1/2 A
    D^-1/2). callback(iteration, relative_residual) after every true residual check.
    """
    if sp.issparse(A):
        A = sp.csr_matrix(A, dtype=np.float64)
    else:
        A = np.asarray(A, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    n = A.shape[0]
    if b.shape != (n,):
        raise InputError(f"b has shape {b.shape}, A is {A.shape[0]} x {A.shape[1]}")
    d = A.diagonal()
    if not np.all(d > 0):
        raise InputError("cg-ssor needs a positive diagonal (A symmetric positive definite)")
    monitor = Monitor(b, options, callback)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    omega, omega_source, extra = choose_ssor_omega(A, options.omega)
    timings["omega_s"] = time.perf_counter() - t

    t = time.perf_counter()
    scale = 1.0 / np.sqrt(d)  # S
    op = _Preconditioned(A, omega, scale)
    timings["setup_s"] = time.perf_counter() - t

    x = np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64)
    if monitor.norm_b == 0.0:  # x = 0 solves it exactly (as scipy's cg answers b = 0)
        x[:] = 0.0
    xs = x / scale  # the scaled unknown S^-1 x
    r, p, t_vec, s_vec = (np.zeros(n) for _ in range(4))
    iterate_s = check_s = 0.0
    iterations = 0

    def check() -> str | None:
        nonlocal check_s
        t = time.perf_counter()
        np.multiply(xs, scale, out=x)
        res = residual_norm(A, b, x)
        check_s += time.perf_counter() - t
        return monitor.check(iterations, res)

    def restart() -> float:
        """r = Lc^-1 S (b - A x): CG starts (again) from the current x; returns r . r."""
        g = scale * (b - A @ (xs * scale))
        op.forward_apply(g, np.zeros(n), r)  # t = 0: a plain forward solve
        return float(r @ r)

    try:
        reason = check()
        rr = restart()
        monitor.calibrate(math.sqrt(rr))
        beta = 0.0
        while reason is None:
            if rr == 0.0:  # r vanished but the true residual did not: start over from x
                rr, beta = restart(), 0.0
                monitor.calibrate(math.sqrt(rr))
            gap = monitor.gap()
            curved = True
            t = time.perf_counter()
            for _ in range(gap):
                op.backward_direction(r, p, beta, t_vec)
                pq = op.forward_apply(p, t_vec, s_vec)
                if not pq > 0.0:  # not SPD (or NaN): CG cannot go on
                    curved = False
                    break
                rr_new = eisenstat.cg_update(rr / pq, t_vec, s_vec, xs, r)
                iterations += 1
                beta, rr = rr_new / rr, rr_new
                if monitor.estimate_met(math.sqrt(rr)):
                    break
            iterate_s += time.perf_counter() - t
            reason = check()
            monitor.calibrate(math.sqrt(rr))
            if reason is None and not curved:
                reason = "diverged"
    except KeyboardInterrupt:
        reason = "interrupted"
        if monitor.iterations != iterations:
            check()  # x and the last residual describe the same (last) iterate
    np.multiply(xs, scale, out=x)
    timings["iterate_s"] = iterate_s
    timings["checks_s"] = check_s
    if iterations:
        timings["per_iteration_s"] = iterate_s / iterations
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
