"""Choosing omega: Young's formula from an estimate of the Jacobi spectral radius.

The Jacobi iteration matrix J = I - D^-1 A has the eigenvalues 1 - lambda(S), S = D^-1/2 A D^-1/2,
so rho(J) = max(lambda_max(S) - 1, 1 - lambda_min(S)). For a consistently ordered matrix (2-D/3-D
Poisson and friends) both ends agree and the best omega is Young's 2 / (1 + sqrt(1 - rho^2)).
Both extreme eigenvalues come from one plain Lanczos run (no restarts: ARPACK's restarted eigsh
needs minutes where this needs about 0.7 m matrix-vector products on an m x m Poisson grid, a
fifth of the sweeps SOR then takes). Ritz values approach the ends from inside, and an omega below
the optimum costs more sweeps than one above it (on 2-D Poisson 512^2: 1 - rho off by +10% costs
10% more sweeps, by -10% only 0.3%), so the run stops only when the estimate of 1 - rho has
settled to a small relative tolerance.
"""

from __future__ import annotations

import math
from functools import partial

import numba
import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from sorctl.errors import InputError

# When rho >= 1 Young's formula does not apply (rotated anisotropy, elasticity, ...) yet SOR on an
# SPD matrix still converges for any 0 < omega < 2; ~1.9 was near the best measured there.
FALLBACK_OMEGA = 1.9
DENSE_EXACT_N = 300  # below this an exact dense eigenvalue is cheaper than Lanczos
CHECK_EVERY = 10  # Lanczos steps between Ritz-value checks
SETTLE_RTOL = 1e-4  # stop when 1 - rho moved by less than this (relative) over CHECK_EVERY steps
START_NOISE = 0.3  # random part of the Lanczos start vector, relative to its smooth part


def young_omega(rho: float) -> float:
    """Young's optimal omega for a Jacobi spectral radius rho (0 <= rho < 1)."""
    return 2.0 / (1.0 + math.sqrt(max(0.0, 1.0 - rho * rho)))


def jacobi_spectral_radius(A, *, max_steps: int | None = None, seed: int = 0) -> float:
    """Estimate rho(I - D^-1 A) from the extreme eigenvalues of D^-1/2 A D^-1/2."""
    n = A.shape[0]
    s = 1.0 / np.sqrt(A.diagonal())
    if n <= DENSE_EXACT_N:
        dense = A.toarray() if sp.issparse(A) else np.asarray(A)
        lam = sla.eigvalsh(dense * s[:, None] * s[None, :])
        return _rho(float(lam[0]), float(lam[-1]))
    if max_steps is None:
        max_steps = min(n, 200 + 8 * int(math.sqrt(n)))
    if sp.issparse(A):
        A = sp.csr_matrix(A)
        step = partial(_csr_lanczos_step, A.indptr, A.indices, A.data, s)
    else:
        S = np.asarray(A) * s[:, None] * s[None, :]
        step = partial(_dense_lanczos_step, S)
    # Start near the smooth vector D^1/2 1 (S's lowest mode for diffusion-like matrices, where
    # A 1 ~ 0), plus noise so that no mode is missing: half the steps of a random start.
    sqrt_d = 1.0 / s
    v0 = sqrt_d / sqrt_d.mean() + START_NOISE * np.random.default_rng(seed).standard_normal(n)
    return _lanczos_rho(step, v0, max_steps)


def _rho(lam_min: float, lam_max: float) -> float:
    return max(lam_max - 1.0, 1.0 - lam_min)


@numba.njit(cache=True, nogil=True)
def _csr_lanczos_step(indptr, indices, data, s, v, v_old, beta, w):
    """w = S v - beta v_old - alpha v with S = diag(s) A diag(s), in two passes; (alpha, |w|)."""
    n = v.shape[0]
    alpha = 0.0
    for i in range(n):
        acc = 0.0
        for k in range(np.uintp(indptr[i]), np.uintp(indptr[i + 1])):
            j = np.uintp(indices[k])  # unsigned: no negative-index wraparound code
            acc += data[k] * s[j] * v[j]
        wi = s[i] * acc - beta * v_old[i]
        w[i] = wi
        alpha += v[i] * wi
    norm2 = 0.0
    for i in range(n):
        wi = w[i] - alpha * v[i]
        w[i] = wi
        norm2 += wi * wi
    return alpha, np.sqrt(norm2)


def _dense_lanczos_step(S, v, v_old, beta, w):
    np.matmul(S, v, out=w)
    w -= beta * v_old
    alpha = float(v @ w)
    w -= alpha * v
    return alpha, float(np.linalg.norm(w))


def _lanczos_rho(step, v0: np.ndarray, max_steps: int) -> float:
    n = v0.shape[0]
    v = v0 / np.linalg.norm(v0)
    v_old = np.zeros(n)
    w = np.empty(n)
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    rho_old = -math.inf
    rho = -math.inf
    for k in range(1, max_steps + 1):
        alpha, beta = step(v, v_old, beta, w)
        alphas.append(float(alpha))
        beta = float(beta)
        breakdown = beta <= 1e-12 * max(1.0, abs(alpha))  # an invariant subspace: exact
        if k % CHECK_EVERY == 0 or breakdown or k == max_steps:
            a, b = np.array(alphas), np.array(betas)
            lo = sla.eigvalsh_tridiagonal(a, b, select="i", select_range=(0, 0))[0]
            hi = sla.eigvalsh_tridiagonal(a, b, select="i", select_range=(k - 1, k - 1))[0]
            rho = _rho(float(lo), float(hi))
            gap = max(abs(1.0 - rho), 1e-300)  # 1 - rho: the quantity omega is sensitive to
            if breakdown or abs(rho - rho_old) <= SETTLE_RTOL * gap:
                break
            rho_old = rho
        betas.append(beta)
        # rotate buffers: v_old <- v, v <- w / beta, w reused
        np.multiply(w, 1.0 / beta, out=v_old)
        v_old, v, w = v, v_old, w
    return rho


def estimate_omega(A) -> tuple[float, float]:
    """(omega, rho): Young's omega from the estimated Jacobi spectral radius rho, or
    FALLBACK_OMEGA when rho >= 1 (Young's formula does not apply there)."""
    rho = jacobi_spectral_radius(A)
    if rho >= 1.0:
        return FALLBACK_OMEGA, rho
    return young_omega(max(rho, 0.0)), rho


def choose_omega(A, omega: float | None) -> tuple[float, str, dict]:
    """(omega, omega_source, report fields): the user's omega checked, or Young's estimate with
    rho_jacobi (and a note when rho >= 1, where Young's formula does not apply)."""
    if omega is not None:
        if not 0.0 < omega < 2.0:
            raise InputError(f"omega must lie in (0, 2), got {omega}")
        return float(omega), "user", {}
    w, rho = estimate_omega(A)
    extra: dict = {"rho_jacobi": rho}
    if rho >= 1.0:
        extra["omega_note"] = (
            f"Jacobi spectral radius {rho:.4g} >= 1: Young's formula does not apply, "
            f"using omega = {w}"
        )
    return float(w), "estimated", extra
