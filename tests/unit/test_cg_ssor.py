"""cg-ssor: the Eisenstat kernels against plain numpy, and the solver against scipy's cg and
direct solves on SPD systems built in tests/systems.py (not the ones its omega rule was tuned on).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl.errors import InputError
from sorctl.solver import gallery
from sorctl.solver.kernels import eisenstat
from tests import systems
from tests.drivers import local_solve


def cg_ssor(A, b, **options):
    return local_solve(A, b, method="cg-ssor", **options)


def rel(x, y):
    return np.linalg.norm(x - y) / np.linalg.norm(y)


def unit_diagonal(A):
    s = 1.0 / np.sqrt(A.diagonal())
    return sp.csr_matrix(sp.diags(s) @ A @ sp.diags(s))


def triangles(A, omega):
    """Dense I/omega + L and I/omega + U of a unit-diagonal A."""
    D = A.toarray()
    n = D.shape[0]
    return np.tril(D, -1) + np.eye(n) / omega, np.triu(D, 1) + np.eye(n) / omega


def plain(M):
    """A CSR triangle as the solves take it, with no entry kept aside (near = 0)."""
    return M.indptr[:-1], M.indptr[1:], M.indices, M.data, np.zeros(M.shape[0])


def as_csr(triangle, n, side):
    """A triangle the solves take, as a scipy matrix (near[i] in column i + side)."""
    start, end, idx, val, near = triangle
    rows, cols, vals = [], [], []
    for i in range(n):
        for k in range(start[i], end[i]):
            rows.append(i), cols.append(idx[k]), vals.append(val[k])
        if near[i] != 0.0:
            rows.append(i), cols.append(i + side), vals.append(near[i])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


# ---- kernels ------------------------------------------------------------------------------------


@pytest.mark.parametrize("omega", [0.8, 1.0, 1.7])
@pytest.mark.parametrize("seed", [1, 2])
def test_csr_kernels_match_numpy(seed, omega):
    A = unit_diagonal(systems.random_spd(60, 0.1, seed))
    Lc, Uc = triangles(A, omega)
    L, U = sp.tril(A, -1, format="csr"), sp.triu(A, 1, format="csr")
    rng = np.random.default_rng(seed)
    r, p0 = rng.standard_normal(60), rng.standard_normal(60)
    p, t, s = p0.copy(), np.zeros(60), np.zeros(60)
    eisenstat.backward_direction(*plain(U), omega, r, p, 0.3, t)
    assert rel(p, r + 0.3 * p0) < 1e-12
    assert rel(t, np.linalg.solve(Uc, p)) < 1e-12
    pq = eisenstat.forward_apply(*plain(L), omega, p, t, s)
    expect_s = np.linalg.solve(Lc, p - (2 / omega - 1) * t)
    assert rel(s, expect_s) < 1e-12
    # Eisenstat's identity: t + s is the preconditioned operator applied to p
    q = np.linalg.solve(Lc, A.toarray() @ np.linalg.solve(Uc, p))
    assert rel(t + s, q) < 1e-12
    assert pq == pytest.approx(p @ q, rel=1e-12)


@pytest.mark.parametrize(
    "make", [lambda: systems.random_spd(80, 0.1, 13), lambda: systems.poisson2d(9)]
)
def test_split_scaled_matches_scipy(make):
    A = make()
    n = A.shape[0]
    s_ = 1.0 / np.sqrt(A.diagonal())
    tri = eisenstat.split_scaled(A.indptr, A.indices, A.data, s_)
    As = sp.diags(s_) @ A @ sp.diags(s_)
    L, U = as_csr(eisenstat.lower_of(tri), n, -1), as_csr(eisenstat.upper_of(tri), n, 1)
    assert abs(L - sp.tril(As, -1)).max() < 1e-15 and abs(U - sp.triu(As, 1)).max() < 1e-15


def test_split_scaled_solves_match_plain_triangles():
    """The entries beside the diagonal, kept aside, give the plain CSR triangles' solves."""
    A = unit_diagonal(systems.poisson3d(5) + sp.diags(np.linspace(0, 1, 125)))
    tri = eisenstat.split_scaled(A.indptr, A.indices, A.data, np.ones(125))
    L, U = sp.tril(A, -1, format="csr"), sp.triu(A, 1, format="csr")
    rng = np.random.default_rng(8)
    r, p0 = rng.standard_normal(125), rng.standard_normal(125)
    got, want = [p0.copy(), np.zeros(125), np.zeros(125)], [p0.copy(), np.zeros(125), np.zeros(125)]
    for parts, (p, t, s) in ((tri, got), (None, want)):
        up = plain(U) if parts is None else eisenstat.upper_of(parts)
        low = plain(L) if parts is None else eisenstat.lower_of(parts)
        eisenstat.backward_direction(*up, 1.4, r, p, 0.5, t)
        eisenstat.forward_apply(*low, 1.4, p, t, s)
    for a, b in zip(got, want, strict=True):
        assert rel(a, b) < 1e-13


def test_scaled_residual_matches_numpy():
    """The unit-diagonal triangles (S = D^-1/2) give b - A x, and g = S (b - A x)."""
    A = systems.random_spd(70, 0.1, 21)
    rng = np.random.default_rng(9)
    b, x, s_ = rng.standard_normal(70), rng.standard_normal(70), 1.0 / np.sqrt(A.diagonal())
    fptr, _, fidx, fval, lower, upper = eisenstat.split_scaled(A.indptr, A.indices, A.data, s_)
    g = np.empty(70)
    rr = eisenstat.scaled_residual(fptr, fidx, fval, lower, upper, s_, b, x, g)
    r = b - A @ x
    assert rr == pytest.approx(r @ r, rel=1e-12)
    assert rel(g, s_ * r) < 1e-12


def test_cg_update_matches_numpy():
    rng = np.random.default_rng(3)
    t, s, x, r = (rng.standard_normal(50) for _ in range(4))
    x0, r0 = x.copy(), r.copy()
    rr = eisenstat.cg_update(0.7, t, s, x, r)
    assert rel(x, x0 + 0.7 * t) < 1e-12
    assert rel(r, r0 - 0.7 * (t + s)) < 1e-12
    assert rr == pytest.approx(r @ r, rel=1e-12)


@pytest.mark.parametrize("omega", [1.0, 1.5])
def test_dense_kernels_match_numpy(omega):
    D = systems.dense_spd(40, seed=4)
    s_ = 1.0 / np.sqrt(np.diag(D))
    A = D * s_[:, None] * s_[None, :]
    Lc, Uc = triangles(sp.csr_matrix(A), omega)
    dense = eisenstat.DenseEisenstat(A, omega)
    rng = np.random.default_rng(5)
    r, p0 = rng.standard_normal(40), rng.standard_normal(40)
    p, t, s = p0.copy(), np.zeros(40), np.zeros(40)
    dense.backward_direction(r, p, 2.0, t)
    assert rel(p, r + 2.0 * p0) < 1e-12
    assert rel(t, np.linalg.solve(Uc, p)) < 1e-12
    pq = dense.forward_apply(p, t, s)
    q = np.linalg.solve(Lc, A @ np.linalg.solve(Uc, p))
    assert rel(t + s, q) < 1e-12
    assert pq == pytest.approx(p @ q, rel=1e-12)


def test_kernels_accept_int64_and_unsorted_rows():
    A = unit_diagonal(systems.random_spd(40, 0.15, 6))
    L = sp.tril(A, -1, format="csr")
    rng = np.random.default_rng(7)
    p, t = rng.standard_normal(40), rng.standard_normal(40)
    s1, s2 = np.zeros(40), np.zeros(40)
    eisenstat.forward_apply(*plain(L), 1.3, p, t, s1)
    indices, data = L.indices.astype(np.int64), L.data.copy()
    for i in range(40):
        a, e = L.indptr[i], L.indptr[i + 1]
        perm = a + rng.permutation(e - a)
        indices[a:e], data[a:e] = indices[perm], data[perm]
    ptr = L.indptr.astype(np.int64)
    eisenstat.forward_apply(ptr[:-1], ptr[1:], indices, data, np.zeros(40), 1.3, p, t, s2)
    assert rel(s2, s1) < 1e-12


# ---- the solver ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: systems.poisson2d(40),
        lambda: systems.poisson3d(12),
        lambda: systems.anisotropic2d(40, 0.05, 0.5),
        lambda: systems.random_spd(1500, 0.004, 11),
    ],
    ids=["poisson2d", "poisson3d", "anisotropic", "random"],
)
def test_sparse_matches_spsolve_and_scipy_cg(make):
    A = make()
    b = np.random.default_rng(8).standard_normal(A.shape[0])
    result = cg_ssor(A, b, rtol=1e-10)
    assert result.converged and result.reason == "rtol"
    assert result.residuals[-1] <= 1e-10
    assert np.linalg.norm(b - A @ result.x) / np.linalg.norm(b) == pytest.approx(
        result.residuals[-1], rel=1e-6
    )
    assert rel(result.x, spla.spsolve(A.tocsc(), b)) < 1e-7
    x_cg, info = spla.cg(A, b, rtol=1e-11, maxiter=20_000)
    assert info == 0 and rel(result.x, x_cg) < 1e-7
    assert result.method == "cg-ssor" and result.backend == "local"
    assert result.n == A.shape[0] and result.nnz == A.nnz


def test_iterates_are_scipy_pcg_with_the_ssor_preconditioner():
    A = systems.poisson2d(20)
    b = np.ones(400)
    w = 1.6
    d = A.diagonal()
    Lw = sp.tril(A, -1) + sp.diags(d / w)
    Uw = sp.triu(A, 1) + sp.diags(d / w)
    Lw_d, Uw_d = Lw.toarray(), Uw.toarray()

    def ssor(r):  # (D/w + L) (D/w)^-1 (D/w + U) z = r
        return np.linalg.solve(Uw_d, d / w * np.linalg.solve(Lw_d, r))

    M = spla.LinearOperator(A.shape, ssor)
    x_ref, _ = spla.cg(A, b, rtol=0.0, atol=0.0, maxiter=15, M=M)
    result = cg_ssor(A, b, omega=w, rtol=0.0, maxiter=15)
    assert result.iterations == 15 and result.reason == "maxiter"
    assert rel(result.x, x_ref) < 1e-11


def test_dense_matches_numpy():
    A = systems.dense_spd(150, seed=9)
    b = np.random.default_rng(10).standard_normal(150)
    result = cg_ssor(A, b, rtol=1e-11)
    assert result.converged
    assert rel(result.x, np.linalg.solve(A, b)) < 1e-9
    assert result.nnz == 150 * 150


def test_maxiter_stops_exactly():
    A = systems.poisson2d(30)
    result = cg_ssor(A, np.ones(900), maxiter=7, omega=1.5)
    assert result.reason == "maxiter" and not result.converged
    assert result.iterations == 7 and result.extra["check_iterations"][-1] == 7
    assert result.residuals[-1] == pytest.approx(
        np.linalg.norm(np.ones(900) - A @ result.x) / 30, rel=1e-9
    )


def test_atol_reason():
    A = systems.poisson2d(25)
    b = np.ones(625)
    result = cg_ssor(A, b, rtol=0.0, atol=1e-4)
    assert result.converged and result.reason == "atol"
    assert np.linalg.norm(b - A @ result.x) <= 1e-4


def test_x0_is_honoured():
    A = systems.poisson2d(30)
    b = np.random.default_rng(12).standard_normal(900)
    exact = spla.spsolve(A.tocsc(), b)
    near = cg_ssor(A, b, x0=exact + 1e-6, rtol=1e-8, omega=1.8)
    cold = cg_ssor(A, b, rtol=1e-8, omega=1.8)
    assert near.converged and near.iterations < cold.iterations
    assert near.residuals[0] < 1e-3  # the first check is of x0, not of 0
    exact_start = cg_ssor(A, b, x0=exact, rtol=1e-8)
    assert exact_start.iterations == 0 and np.array_equal(exact_start.x, exact)


def test_zero_rhs_converges_at_once():
    A = systems.poisson2d(6)
    for x0 in (None, np.ones(36)):
        result = cg_ssor(A, np.zeros(36), x0=x0)
        assert result.converged and result.iterations == 0
        assert not result.x.any()


def test_omega_override_and_estimate():
    A = systems.poisson2d(30)
    b = np.ones(900)
    given = cg_ssor(A, b, omega=1.3)
    assert given.omega == 1.3 and given.omega_source == "user"
    auto = cg_ssor(A, b)
    assert auto.omega_source == "estimated" and 1.0 < auto.omega < 2.0
    assert auto.extra["lambda_min"] > 0
    assert auto.iterations < given.iterations
    with pytest.raises(InputError, match="omega"):
        cg_ssor(A, b, omega=2.0)


def test_keyboard_interrupt_returns_the_last_iterate():
    A = systems.poisson2d(40)
    b = np.ones(1600)
    calls = []

    def stop_on_second(it, r):
        calls.append(it)
        if len(calls) == 2:
            raise KeyboardInterrupt

    result = cg_ssor(A, b, omega=1.5, rtol=1e-12, callback=stop_on_second)
    assert result.reason == "interrupted" and not result.converged
    assert result.iterations == calls[-1] > 0
    assert result.residuals[-1] == pytest.approx(
        np.linalg.norm(b - A @ result.x) / np.linalg.norm(b), rel=1e-9
    )


def test_not_spd_is_diverged():
    # symmetric indefinite with a positive diagonal: p'Ap <= 0 ends CG
    A = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    result = cg_ssor(A, np.array([1.0, -1.0, 0.5]), omega=1.0)
    assert result.reason == "diverged" and not result.converged
    with pytest.raises(InputError, match="positive diagonal"):
        cg_ssor(sp.csr_matrix(-np.eye(3)), np.ones(3))


def test_local_solve_dispatches_and_callback_sees_every_check():
    A, b = gallery.poisson2d(20)
    seen = []
    result = local_solve(
        A, b, method="cg-ssor", rtol=1e-9, callback=lambda it, r: seen.append((it, r))
    )
    assert result.method == "cg-ssor" and result.converged
    assert [r for _, r in seen] == result.residuals
    assert [it for it, _ in seen] == result.extra["check_iterations"]
    with pytest.raises(InputError, match="cg-ssor"):
        local_solve(A, b, method="jacobi")
