"""omega: Young's formula from the Lanczos estimate, checked against the exact optimum."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sorctl.solver import gallery
from sorctl.solver.kernels import make_sweeper, residual_norm
from sorctl.solver.omega import FALLBACK_OMEGA, estimate_omega, jacobi_spectral_radius, young_omega
from tests.drivers import local_solve as solve


def sweeps_to(A, b, omega, rtol=1e-8):
    sweep, x, target = make_sweeper(A, omega), np.zeros(len(b)), rtol * np.linalg.norm(b)
    for k in range(1, 20000):
        sweep(b, x, 1)
        if residual_norm(A, b, x) <= target:
            return k
    raise AssertionError("no convergence")


@pytest.mark.parametrize("m", [40, 70])  # n = 1600, 4900: the Lanczos path, not the exact one
def test_auto_omega_within_2_percent_of_the_optimum_on_poisson(m):
    A, b = gallery.poisson2d(m)
    omega, rho = estimate_omega(A)
    exact_rho = np.cos(np.pi / (m + 1))
    assert rho == pytest.approx(exact_rho, abs=1e-6)
    auto = sweeps_to(A, b, omega)
    best = sweeps_to(A, b, young_omega(exact_rho))
    assert auto <= 1.02 * best


def test_small_matrices_use_the_exact_spectrum():
    A, _ = gallery.poisson2d(10)  # n = 100
    assert jacobi_spectral_radius(A) == pytest.approx(np.cos(np.pi / 11), rel=1e-12)


def test_dense_estimate_matches_eigvalsh():
    A, _ = gallery.dense_spd(600, seed=11)
    s = 1 / np.sqrt(np.diag(A))
    lam = np.linalg.eigvalsh(A * s[:, None] * s[None, :])
    expect = max(lam[-1] - 1, 1 - lam[0])
    assert jacobi_spectral_radius(A) == pytest.approx(expect, rel=1e-4)


def test_rho_at_least_one_falls_back_and_says_so():
    # SPD, but lambda_max(D^-1/2 A D^-1/2) = 2.8: Jacobi diverges and Young's formula fails.
    A = sp.csr_matrix(np.full((3, 3), 0.9) + 0.1 * np.eye(3))
    omega, rho = estimate_omega(A)
    assert rho == pytest.approx(1.8)
    assert omega == FALLBACK_OMEGA
    result = solve(A, np.ones(3))
    assert result.converged
    assert "Young's formula does not apply" in result.extra["omega_note"]
    assert result.omega_source == "estimated"


def test_diagonal_matrix_gives_gauss_seidel():
    omega, rho = estimate_omega(sp.identity(500, format="csr") * 3.0)
    assert rho == pytest.approx(0.0, abs=1e-12)
    assert omega == pytest.approx(1.0)
