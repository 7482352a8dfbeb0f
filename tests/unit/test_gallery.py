"""Test systems: the shapes, symmetry and definiteness the solver relies on."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sorctl.solver import gallery


def test_poisson2d_is_the_kronecker_sum():
    m = 7
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    expect = sp.kron(sp.identity(m), T) + sp.kron(T, sp.identity(m))
    A, b = gallery.poisson2d(m)
    assert np.array_equal(A.toarray(), expect.toarray()) and b.shape == (m * m,)


def test_poisson3d_stencil():
    A, b = gallery.poisson3d(5)
    assert A.shape == (125, 125) and b.shape == (125,)
    assert np.all(A.diagonal() == 6.0)
    assert A.nnz == 125 + 2 * 3 * 4 * 25  # diagonal + two neighbours per interior edge per axis
    assert np.allclose(A.sum(axis=1).A.ravel()[62], 0.0)  # centre row sums to 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: gallery.poisson2d(6),
        lambda: gallery.poisson3d(4),
        lambda: gallery.anisotropic2d(8, 0.001, np.pi / 6),
        lambda: gallery.random_spd(120, 0.05, seed=4),
        lambda: gallery.dense_spd(60, seed=5),
    ],
)
def test_symmetric_positive_definite(make):
    A, b = make()
    dense = A.toarray() if sp.issparse(A) else A
    assert dense.dtype == np.float64 and b.dtype == np.float64
    assert np.array_equal(dense, dense.T)
    assert np.linalg.eigvalsh(dense).min() > 0
    if sp.issparse(A):
        assert A.has_canonical_format


def test_random_spd_pattern_is_irregular_and_seeded():
    A, b = gallery.random_spd(300, 0.02, seed=1)
    row_counts = np.diff(A.indptr)
    assert row_counts.min() < row_counts.max()
    B, c = gallery.random_spd(300, 0.02, seed=1)
    assert (A != B).nnz == 0 and np.array_equal(b, c)
