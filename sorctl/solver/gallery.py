"""Test systems (A, b): finite-difference/element model problems and random SPD matrices.

Every generator returns a canonical float64 CSR matrix (dense_spd: a 2-D ndarray) and b.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _stencil_grid(stencil: np.ndarray, m: int, dim: int) -> sp.csr_matrix:
    """The matrix of a 3x3 (dim 2) or 3x3x3 (dim 3) stencil on an m^dim grid, Dirichlet edges."""
    n = m**dim
    grid = np.indices((m,) * dim).reshape(dim, n)
    rows, cols, vals = [], [], []
    for offset in np.ndindex(stencil.shape):
        value = stencil[offset]
        if value == 0:
            continue
        shift = np.array(offset) - 1
        nb = grid + shift[:, None]
        keep = np.all((nb >= 0) & (nb < m), axis=0)
        src = np.flatnonzero(keep)
        dst = np.ravel_multi_index(tuple(nb[:, keep]), (m,) * dim)
        rows.append(src)
        cols.append(dst)
        vals.append(np.full(src.size, value))
    A = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    A.sum_duplicates()
    A.sort_indices()
    return A


def poisson2d(m: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """5-point Laplacian on an m x m interior grid (n = m^2), b = 1."""
    s = np.zeros((3, 3))
    s[1, 1] = 4.0
    s[0, 1] = s[2, 1] = s[1, 0] = s[1, 2] = -1.0
    return _stencil_grid(s, m, 2), np.ones(m * m)


def poisson3d(m: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """7-point Laplacian on an m^3 interior grid, b = 1."""
    s = np.zeros((3, 3, 3))
    s[1, 1, 1] = 6.0
    for axis in range(3):
        for side in (0, 2):
            idx = [1, 1, 1]
            idx[axis] = side
            s[tuple(idx)] = -1.0
    return _stencil_grid(s, m, 3), np.ones(m**3)


def anisotropic2d(
    m: int, eps: float = 0.01, theta: float = np.pi / 4
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rotated anisotropic diffusion (bilinear finite elements, the stencil PyAMG's
    diffusion_stencil_2d builds): strong direction theta, weak coefficient eps. Not consistently
    ordered: the Jacobi spectral radius can exceed 1."""
    c, s_ = np.cos(theta), np.sin(theta)
    cc, ss, cs = c * c, s_ * s_, c * s_
    a = (-eps - 1) * cc + (-eps - 1) * ss + (3 * eps - 3) * cs
    b = (2 * eps - 4) * cc + (-4 * eps + 2) * ss
    cc_ = (-eps - 1) * cc + (-eps - 1) * ss + (-3 * eps + 3) * cs
    d = (-4 * eps + 2) * cc + (2 * eps - 4) * ss
    e = (8 * eps + 8) * cc + (8 * eps + 8) * ss
    stencil = np.array([[a, b, cc_], [d, e, d], [cc_, b, a]]) / 6.0
    return _stencil_grid(stencil, m, 2), np.ones(m * m)


def random_spd(n: int, density: float = 0.01, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sparse SPD with an irregular random pattern: symmetric random off-diagonals, made
    diagonally dominant (so SPD); b random."""
    rng = np.random.default_rng(seed)
    B = sp.random(n, n, density=density, random_state=rng, format="csr")
    B.data -= 0.5
    S = sp.triu(B, 1)
    S = S + S.T
    diag = np.asarray(abs(S).sum(axis=1)).ravel() + rng.uniform(0.1, 1.0, n)
    A = sp.csr_matrix(S + sp.diags(diag))
    A.sum_duplicates()
    A.sort_indices()
    return A, rng.standard_normal(n)


def dense_spd(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dense SPD (2 I plus a scaled symmetric Gaussian matrix: eigenvalues in about [0.6, 3.4])."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    A = (G + G.T) / (2.0 * np.sqrt(2.0 * n))
    A[np.diag_indices(n)] += 2.0
    return A, rng.standard_normal(n)
