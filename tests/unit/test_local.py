"""The local driver against scipy/numpy direct solvers, and its stopping rules."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl.solver import gallery, kernels
from tests.drivers import local_solve as solve


def rel(x, y):
    return np.linalg.norm(x - y) / np.linalg.norm(y)


@pytest.mark.parametrize("method", ["sor", "ssor", "multicolor"])
@pytest.mark.parametrize(
    "system",
    [
        lambda: gallery.random_spd(700, 0.01, seed=21),
        lambda: gallery.poisson3d(9),
        lambda: gallery.anisotropic2d(20, 0.05, 0.5),
    ],
    ids=["random", "poisson3d", "anisotropic"],
)
def test_sparse_solution_matches_spsolve(system, method):
    A, b = system()
    result = solve(A, b, rtol=1e-10, method=method)
    assert result.converged and result.reason == "rtol"
    assert rel(result.x, spla.spsolve(A.tocsc(), b)) < 1e-7
    assert result.residuals[-1] <= 1e-10
    assert result.n == A.shape[0] and result.nnz == A.nnz


@pytest.mark.parametrize("method", ["sor", "ssor"])
def test_dense_solution_matches_numpy(method):
    A, b = gallery.dense_spd(120, seed=22)
    result = solve(A, b, rtol=1e-11, method=method, x0=np.ones(120))
    assert result.converged
    assert rel(result.x, np.linalg.solve(A, b)) < 1e-9


def test_iterations_is_the_exact_sweep_count_of_x():
    A, b = gallery.poisson2d(15)
    result = solve(A, b, omega=1.5, rtol=1e-6)
    x = np.zeros(len(b))
    kernels.sor_sweeps(A, b, x, 1.5, result.iterations)
    assert np.array_equal(x, result.x)
    every = solve(A, b, omega=1.5, rtol=1e-6, check_every=1)
    # the adaptive schedule lands within a few sweeps of the first sweep that met the tolerance
    assert every.iterations <= result.iterations <= every.iterations + 5
    assert len(every.residuals) == every.iterations + 1


def test_maxiter_stops_exactly_and_reports_not_converged():
    A, b = gallery.poisson2d(20)
    result = solve(A, b, maxiter=37, omega=1.2)
    assert not result.converged and result.reason == "maxiter"
    assert result.iterations == 37
    assert result.extra["check_iterations"][-1] == 37


def test_atol_reason():
    A, b = gallery.poisson2d(10)
    result = solve(A, b, rtol=0.0, atol=1e-3, omega=1.5)
    assert result.converged and result.reason == "atol"
    assert result.residuals[-1] * np.linalg.norm(b) <= 1e-3


def test_divergence_is_detected():
    # Symmetric indefinite, positive diagonal: Gauss-Seidel grows the error 4x per sweep.
    A = sp.csr_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))
    result = solve(A, np.ones(2), omega=1.0, maxiter=10_000)
    assert result.reason == "diverged" and not result.converged
    assert result.iterations < 100


def test_zero_rhs_converges_at_once():
    A, _ = gallery.poisson2d(5)
    for x0 in (None, np.ones(25)):
        result = solve(A, np.zeros(25), x0=x0)
        assert result.converged and result.iterations == 0
        assert not result.x.any()


def test_callback_sees_every_check_and_report_is_json_ready():
    import json

    seen = []
    A, b = gallery.poisson2d(12)
    result = solve(A, b, callback=lambda it, r: seen.append((it, r)))
    assert [r for _, r in seen] == result.residuals
    assert seen[0] == (0, 1.0)
    report = json.loads(json.dumps(result.to_report()))
    for key in (
        "converged",
        "reason",
        "iterations",
        "relative_residual",
        "omega",
        "omega_source",
        "n",
        "nnz",
        "time_s",
        "backend",
    ):
        assert key in report
    assert report["backend"] == "local" and report["omega_source"] == "estimated"


def test_bad_arguments():
    A, b = gallery.poisson2d(4)
    with pytest.raises(ValueError, match="omega"):
        solve(A, b, omega=2.0)
    with pytest.raises(ValueError, match="shape"):
        solve(A, b[:-1])
