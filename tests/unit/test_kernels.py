"""Every sweep kernel against the textbook SOR loop in plain Python, on small random SPD systems
(dense, and sparse with irregular patterns)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sorctl.solver import gallery, kernels
from sorctl.solver.kernels import csr, multicolor

SWEEPS = 5


def textbook_sor(A: np.ndarray, b, x, omega, sweeps, order=None):
    """x_i <- (1 - w) x_i + w / a_ii (b_i - sum_{j != i} a_ij x_j), rows in `order`."""
    n = len(b)
    order = range(n) if order is None else order
    for _ in range(sweeps):
        for i in order:
            sigma = sum(A[i, j] * x[j] for j in range(n) if j != i)
            x[i] = (1 - omega) * x[i] + omega / A[i, i] * (b[i] - sigma)
    return x


def irregular_spd(n, seed):
    A, b = gallery.random_spd(n, density=0.15, seed=seed)
    return A, b


def systems():
    for seed in (1, 2):
        A, b = irregular_spd(37, seed)
        yield f"sparse-{seed}", A, b
    D, c = gallery.dense_spd(29, seed=3)
    yield "dense", D, c


def rel(x, y):
    return np.linalg.norm(x - y) / np.linalg.norm(y)


@pytest.mark.parametrize("omega", [0.7, 1.0, 1.6])
@pytest.mark.parametrize("name,A,b", list(systems()), ids=lambda v: v if isinstance(v, str) else "")
def test_sor_matches_textbook(name, A, b, omega):
    x0 = np.random.default_rng(0).standard_normal(len(b))
    x = x0.copy()
    kernels.sor_sweeps(A, b, x, omega, SWEEPS)
    dense = A.toarray() if sp.issparse(A) else A
    expect = textbook_sor(dense, b, x0.copy(), omega, SWEEPS)
    assert rel(x, expect) < 1e-12


@pytest.mark.parametrize("name,A,b", list(systems()), ids=lambda v: v if isinstance(v, str) else "")
def test_ssor_is_forward_then_backward(name, A, b):
    omega = 1.3
    x = np.zeros(len(b))
    kernels.ssor_sweeps(A, b, x, omega, 3)
    dense = A.toarray() if sp.issparse(A) else A
    n = len(b)
    expect = np.zeros(n)
    for _ in range(3):
        textbook_sor(dense, b, expect, omega, 1)
        textbook_sor(dense, b, expect, omega, 1, order=range(n - 1, -1, -1))
    assert rel(x, expect) < 1e-12


@pytest.mark.parametrize("seed", [4, 5])
def test_multicolour_is_sor_in_the_colour_order(seed):
    A, b = irregular_spd(41, seed)
    mc = multicolor.MulticolourSOR(A, 1.4)
    x = np.zeros(len(b))
    mc.forward(b, x, SWEEPS)
    expect = textbook_sor(A.toarray(), b, np.zeros(len(b)), 1.4, SWEEPS, order=list(mc.perm))
    assert rel(x, expect) < 1e-12
    # the public one-shot function does the same
    y = np.zeros(len(b))
    kernels.multicolor_sweeps(A, b, y, 1.4, SWEEPS)
    assert rel(y, expect) < 1e-12


def test_greedy_colouring_is_proper_and_poisson_is_red_black():
    A, _ = irregular_spd(200, 7)
    colour = multicolor.colour_rows(A)
    rows, cols = A.nonzero()
    off = rows != cols
    assert np.all(colour[rows[off]] != colour[cols[off]])
    P, _ = gallery.poisson2d(9)
    assert multicolor.colour_rows(P).max() == 1  # two colours


def test_multicolour_on_a_nonsymmetric_pattern_still_proper():
    A = sp.csr_matrix(np.array([[2.0, 1, 0], [0, 2, 0], [0, 1, 2]]))
    colour = multicolor.colour_rows(A)
    assert colour[0] != colour[1] and colour[2] != colour[1]


def test_plain_array_kernel_accepts_int64_and_unsorted_blocks():
    # The distributed node calls the kernel on raw arrays; sorting only matters for speed.
    A, b = irregular_spd(30, 8)
    x = np.zeros(30)
    csr.sor_forward(*csr.split_tridiagonal(A.indptr, A.indices, A.data, 30), b, x, 1.2, SWEEPS)
    rng = np.random.default_rng(1)
    indices, data = A.indices.astype(np.int64), A.data.copy()
    for i in range(30):  # shuffle within each row
        s, e = A.indptr[i], A.indptr[i + 1]
        p = s + rng.permutation(e - s)
        indices[s:e], data[s:e] = indices[p], data[p]
    y = np.zeros(30)
    split = csr.split_tridiagonal(A.indptr.astype(np.int64), indices, data, 30)
    csr.sor_forward(*split, b, y, 1.2, SWEEPS)
    assert rel(y, x) < 1e-12


def test_residual_norm_matches_numpy():
    A, b = irregular_spd(50, 9)
    x = np.random.default_rng(2).standard_normal(50)
    expect = np.linalg.norm(b - A @ x)
    assert kernels.residual_norm(A, b, x) == pytest.approx(expect, rel=1e-12)
    assert kernels.residual_norm(A.toarray(), b, x) == pytest.approx(expect, rel=1e-12)


def test_unknown_method_is_refused():
    A, _ = irregular_spd(10, 1)
    with pytest.raises(ValueError, match="unknown method"):
        kernels.make_sweeper(A, 1.0, "jacobi")


def test_multicolour_on_dense_is_lexicographic_sor():
    A, b = gallery.dense_spd(30, seed=6)
    x, y = np.zeros(30), np.zeros(30)
    kernels.multicolor_sweeps(A, b, x, 1.2, 3)
    kernels.sor_sweeps(A, b, y, 1.2, 3)
    assert np.array_equal(x, y)


def block_like(n=12, nhalo=5, seed=7):
    """A block's rows as the node holds them: columns 0..n-1 its own, column n never used, the
    halo after it; nonsymmetric, entries in scrambled order within each row, one duplicate."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n + 1 + nhalo)) * (rng.random((n, n + 1 + nhalo)) < 0.5)
    M[:, n] = 0.0
    i = np.arange(n - 1)
    M[i, i + 1] = np.where(i % 3 == 2, 0.0, -1.0 - rng.random(n - 1))  # some rows without one
    M[i + 1, i] = np.where(i % 4 == 1, 0.0, -1.0 - rng.random(n - 1))
    M[np.arange(n), np.arange(n)] = 8.0 + rng.random(n)
    rows, cols = np.nonzero(M)
    vals = M[rows, cols]
    order = np.lexsort((rng.random(rows.size), rows))  # by row, shuffled within
    rows, cols, vals = rows[order], cols[order], vals[order]
    # split a_{0,1} into two entries: duplicates are summed
    k = int(np.flatnonzero((rows == 0) & (cols == 1))[0])
    rows, cols = np.insert(rows, k, 0), np.insert(cols, k, 1)
    vals = np.insert(vals, k, 0.25 * vals[k])
    vals[k + 1] *= 0.75
    indptr = np.searchsorted(rows, np.arange(n + 1)).astype(np.int32)
    return M, indptr, cols.astype(np.int32), vals, rng.standard_normal(n)


def test_split_layout_holds_the_block_and_its_sweeps_are_textbook():
    n = 12
    M, indptr, indices, data, b = block_like(n)
    split = csr.split_tridiagonal(indptr, indices, data, n)
    fptr, fidx, fval, lower, diag, upper = split
    assert np.array_equal(diag, np.diag(M[:, :n]))
    assert np.allclose(lower[1:], np.diag(M, -1)[: n - 1]) and lower[0] == 0.0
    assert np.allclose(upper[:-1], np.diag(M, 1)[: n - 1]) and upper[-1] == 0.0
    assert np.all(np.abs(fidx.astype(np.int64) - np.repeat(np.arange(n), np.diff(fptr))) > 1)
    x0 = np.random.default_rng(3).standard_normal(M.shape[1])
    x0[n] = 0.0  # the unused slot
    assert np.isclose(csr.split_residual_norm2(*split, b, x0), np.sum((b - M @ x0) ** 2))
    y = np.empty(n)
    csr.split_matvec(*split, x0, y)
    assert np.allclose(y, M @ x0)
    omega = 1.3
    for backward in (False, True):
        order = range(n - 1, -1, -1) if backward else range(n)
        expect = x0.copy()
        for i in order:  # the textbook rule, halo values fixed
            expect[i] += omega / M[i, i] * (b[i] - M[i] @ expect)
        x = x0.copy()  # in two ranges, as a node sweeps when it sends rows early
        if backward:
            csr.sor_backward_rows(*split, b, x, omega, 5, n)
            csr.sor_backward_rows(*split, b, x, omega, 0, 5)
        else:
            csr.sor_forward_rows(*split, b, x, omega, 0, 5)
            csr.sor_forward_rows(*split, b, x, omega, 5, n)
        assert rel(x, expect) < 1e-13
