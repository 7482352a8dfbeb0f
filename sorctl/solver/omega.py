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
from collections.abc import Callable
from dataclasses import dataclass
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
# cg-ssor's omega needs lambda_min only roughly (see ssor_omega): a looser stop, fewer steps
# (2-D Poisson 1024^2: lambda_min about 2x too large, in a seventh of the steps of 1e-4)
SSOR_SETTLE_RTOL = 0.1
SSOR_MU_FACTOR = 4.0  # measured (ssor_omega): CG's count is least near Axelsson's omega for 4 mu
START_NOISE = 0.3  # random part of the Lanczos start vector, relative to its smooth part


def young_omega(rho: float) -> float:
    """Young's optimal omega for a Jacobi spectral radius rho (0 <= rho < 1)."""
    return 2.0 / (1.0 + math.sqrt(max(0.0, 1.0 - rho * rho)))


def jacobi_spectral_radius(A, *, max_steps: int | None = None, seed: int = 0) -> float:
    """Estimate rho(I - D^-1 A) from the extreme eigenvalues of D^-1/2 A D^-1/2."""
    lo, hi = scaled_extremes(
        A, gap_of=lambda lo, hi: 1.0 - _rho(lo, hi), max_steps=max_steps, seed=seed
    )
    return _rho(lo, hi)


def scaled_extremes(
    A, *, gap_of, settle_rtol: float = SETTLE_RTOL, max_steps: int | None = None, seed: int = 0
) -> tuple[float, float]:
    """(lambda_min, lambda_max) of D^-1/2 A D^-1/2; the Lanczos run stops when gap_of(lo, hi) has
    moved by less than settle_rtol (relative) over CHECK_EVERY steps."""
    n = A.shape[0]
    s = 1.0 / np.sqrt(A.diagonal())
    if n <= DENSE_EXACT_N:
        dense = A.toarray() if sp.issparse(A) else np.asarray(A)
        lam = sla.eigvalsh(dense * s[:, None] * s[None, :])
        return float(lam[0]), float(lam[-1])
    if max_steps is None:
        max_steps = lanczos_steps(n)
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
    return _lanczos_extremes(step, v0, max_steps, gap_of, settle_rtol)


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


def _lanczos_extremes(step, v0: np.ndarray, max_steps: int, gap_of, settle_rtol: float):
    n = v0.shape[0]
    v = v0 / np.linalg.norm(v0)
    v_old = np.zeros(n)
    w = np.empty(n)
    beta_last = 0.0

    def run(k: int) -> tuple[list[float], list[float]]:
        nonlocal v, v_old, w, beta_last
        alphas: list[float] = []
        betas: list[float] = []
        for _ in range(k):
            alpha, beta = step(v, v_old, beta_last, w)
            alphas.append(float(alpha))
            betas.append(float(beta))
            if breaks_down(float(alpha), float(beta)):
                break
            beta_last = float(beta)
            # rotate buffers: v_old <- v, v <- w / beta, w reused
            np.multiply(w, 1.0 / beta, out=v_old)
            v_old, v, w = v, v_old, w
        return alphas, betas

    return settled_extremes(run, max_steps, gap_of, settle_rtol)


def breaks_down(alpha: float, beta: float) -> bool:
    """A Lanczos step that found an invariant subspace: its Ritz values are exact."""
    return beta <= 1e-12 * max(1.0, abs(alpha))


def lanczos_steps(n: int) -> int:
    """The most Lanczos steps an estimate on an n x n matrix takes."""
    return min(n, 200 + 8 * int(math.sqrt(n)))


def settled_extremes(run, max_steps: int, gap_of, settle_rtol: float) -> tuple[float, float]:
    """(lambda_min, lambda_max) from Lanczos coefficients: run(k) takes the next k steps and
    returns their alphas and betas (each beta the norm after its step; fewer than k on a
    breakdown). The Ritz values are checked every CHECK_EVERY steps, and the run stops when
    gap_of(lo, hi) has moved by less than settle_rtol (relative) or after max_steps. The local
    estimate and the cluster's (whose steps run on the workers) share this loop."""
    alphas: list[float] = []
    betas: list[float] = []
    gap_old = math.inf
    while True:
        k = min(CHECK_EVERY - len(alphas) % CHECK_EVERY, max_steps - len(alphas))
        new_alphas, new_betas = run(k)
        alphas += new_alphas
        betas += new_betas
        m = len(alphas)
        a, b = np.array(alphas), np.array(betas[: m - 1])
        lo = float(sla.eigvalsh_tridiagonal(a, b, select="i", select_range=(0, 0))[0])
        hi = float(sla.eigvalsh_tridiagonal(a, b, select="i", select_range=(m - 1, m - 1))[0])
        breakdown = breaks_down(alphas[-1], betas[-1])  # run(k) stops early only at one
        gap = gap_of(lo, hi)  # the quantity omega is sensitive to (SOR: 1 - rho)
        settled = abs(gap - gap_old) <= settle_rtol * max(abs(gap), 1e-300)
        if breakdown or settled or m >= max_steps:
            return lo, hi
        gap_old = gap


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
    return sor_choice(*scaled_extremes(A, gap_of=RULES["sor"].gap_of))


def sor_choice(lam_min: float, lam_max: float) -> tuple[float, str, dict]:
    """The SOR rule's omega from the extremes of D^-1/2 A D^-1/2, as choose_omega reports it."""
    rho = _rho(lam_min, lam_max)
    w = FALLBACK_OMEGA if rho >= 1.0 else young_omega(max(rho, 0.0))
    extra: dict = {"rho_jacobi": rho}
    if rho >= 1.0:
        extra["omega_note"] = (
            f"Jacobi spectral radius {rho:.4g} >= 1: Young's formula does not apply, "
            f"using omega = {w}"
        )
    return float(w), "estimated", extra


def ssor_omega(lam_min: float) -> float:
    """SSOR omega for CG preconditioning: 2 / (1 + sqrt(8 mu)), mu = lambda_min(D^-1/2 A D^-1/2).

    Theory (O. Axelsson, "A generalized SSOR method", BIT 12 (1972) 443-467; Axelsson and Barker,
    Finite Element Solution of Boundary Value Problems, 1984): with M = (D/w + L) (D/w)^-1
    (D/w + U) / (2 - w), lambda(M^-1 A) lies in (0, 1] and, with mu = min x'Ax / x'Dx and
    delta = max x'(L D^-1 U - D/4)x / x'Ax,
        cond(M^-1 A) <= (1 + w delta + (2 - w)^2 / (4 w mu)) / (2 - w),
    least at w* = 2 / (1 + sqrt(2 mu (1 + 2 delta))), where it is 1/2 + sqrt((1/2 + delta) / mu):
    the square root of cond(D^-1 A). delta is about 0 for the 5- and 7-point Laplacians
    (measured -2e-4 on 40^2, -3e-3 on 14^3; 0.26 on a rotated anisotropic problem), giving
    2 / (1 + sqrt(2 mu)) (1.9939 on 2-D Poisson 1024^2: 120 iterations to 1e-6, as PETSc's 1.994).
    That bounds cond, not CG's count, which also depends on how the spectrum is spread: measured,
    mu taken 4x larger, 2 / (1 + sqrt(8 mu)), takes 7-17% fewer iterations on 2-D and 3-D Poisson
    and on anisotropic problems (bench/bench_cg_ssor_omega.py), and the count is flat around it
    (mu 2x off either way: within 5%), so a rough, short Lanczos estimate of mu suffices.
    """
    mu = min(max(lam_min, 0.0), 1.0)
    return 2.0 / (1.0 + math.sqrt(SSOR_MU_FACTOR * 2.0 * mu))


# The cluster's SSOR sweeps the blocks in colour order: when a colour holds several blocks, each
# block of the first colour starts from zero at its interfaces, so the preconditioner acts partly
# like block Jacobi and the iteration count is flat for omega in about 1.5-1.7 and grows fast
# above (2-D Poisson 256^2 on 4 blocks: 126-144 iterations for 1.5-1.7, 228 at the rule's 1.945;
# 3-D 40^3: 34-41, 43 at 1.734). sorctl.distributed.driver caps an estimated omega there.
BLOCK_COLOURED_SSOR_OMEGA_MAX = 1.6


def choose_ssor_omega(A, omega: float | None) -> tuple[float, str, dict]:
    """As choose_omega, for SSOR preconditioning: the user's omega, or ssor_omega of the
    estimated lambda_min (reported as lambda_min)."""
    if omega is not None:
        return choose_omega(A, omega)
    rule = RULES["cg-ssor"]
    return ssor_choice(*scaled_extremes(A, gap_of=rule.gap_of, settle_rtol=rule.settle_rtol))


def ssor_choice(lam_min: float, lam_max: float) -> tuple[float, str, dict]:
    """The cg-ssor rule's omega from the extremes, as choose_ssor_omega reports it."""
    return ssor_omega(lam_min), "estimated", {"lambda_min": lam_min}


@dataclass(frozen=True)
class Rule:
    """How a method's omega comes from a Lanczos run: what must settle, how far, and the rule."""

    gap_of: Callable[[float, float], float]
    settle_rtol: float
    choice: Callable[[float, float], tuple[float, str, dict]]


RULES = {
    "sor": Rule(lambda lo, hi: 1.0 - _rho(lo, hi), SETTLE_RTOL, sor_choice),  # also ssor
    "cg-ssor": Rule(lambda lo, hi: lo, SSOR_SETTLE_RTOL, ssor_choice),
}


def rule_of(method: str) -> Rule:
    """The omega rule a method's estimate follows (SSOR as a solver takes SOR's)."""
    return RULES["cg-ssor" if method == "cg-ssor" else "sor"]
