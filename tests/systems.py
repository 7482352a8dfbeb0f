"""Test systems built here, independently of sorctl.solver.gallery, so that the solvers are checked
on matrices the code under test did not make (answers are compared with scipy's direct solve)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def poisson2d(m: int) -> sp.csr_matrix:
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    return sp.csr_matrix(sp.kron(sp.identity(m), t) + sp.kron(t, sp.identity(m)))


def poisson3d(m: int) -> sp.csr_matrix:
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    i = sp.identity(m)
    return sp.csr_matrix(
        sp.kron(sp.kron(i, i), t) + sp.kron(sp.kron(i, t), i) + sp.kron(sp.kron(t, i), i)
    )


def anisotropic2d(m: int, eps: float = 0.05, theta: float = 0.5) -> sp.csr_matrix:
    """Rotated anisotropic diffusion, 9-point stencil (SPD, not an M-matrix)."""
    c, s = np.cos(theta), np.sin(theta)
    kxx, kyy, kxy = c * c + eps * s * s, s * s + eps * c * c, (1 - eps) * c * s
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    d = sp.diags([-0.5, 0.5], [-1, 1], shape=(m, m))
    i = sp.identity(m)
    A = kxx * sp.kron(i, t) + kyy * sp.kron(t, i) + 2 * kxy * sp.kron(d, d.T)
    return sp.csr_matrix(A)


def random_spd(n: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    R = sp.random(n, n, density=density, random_state=rng, format="csr")
    S = R + R.T
    return sp.csr_matrix(S + sp.diags(np.asarray(abs(S).sum(axis=1)).ravel() + 0.1))


def dense_spd(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    return M @ M.T / n + np.eye(n)


def npz_arrays(M: sp.spmatrix) -> dict[str, np.ndarray]:
    """The compressed-sparse keys of scipy.sparse.save_npz for M (csr or csc), without `format`."""
    return dict(data=M.data, indices=M.indices, indptr=M.indptr, shape=np.array(M.shape))
