"""Test systems (A, b): finite-difference/element model problems (made row by row,
sorctl.solver.generated) and random SPD matrices.

Every generator returns a canonical float64 CSR matrix (dense_spd: a 2-D ndarray) and b.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

from sorctl.errors import InputError
from sorctl.solver.generated import ANISOTROPIC_EPS, ANISOTROPIC_THETA, Grid


def poisson2d(m: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """5-point Laplacian on an m x m interior grid (n = m^2), b = 1."""
    g = Grid("poisson2d", m)
    return g.matrix(), g.b()


def poisson3d(m: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """7-point Laplacian on an m^3 interior grid, b = 1."""
    g = Grid("poisson3d", m)
    return g.matrix(), g.b()


def anisotropic2d(
    m: int, eps: float = ANISOTROPIC_EPS, theta: float = ANISOTROPIC_THETA
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rotated anisotropic diffusion (sorctl.solver.generated.anisotropic_stencil): strong
    direction theta, weak coefficient eps. Not consistently ordered: the Jacobi spectral radius
    can exceed 1."""
    g = Grid("anisotropic2d", m, eps, theta)
    return g.matrix(), g.b()


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


def bytes_needed(kind: str, size: int) -> int:
    """Rough peak memory to build and write the system (several copies of the arrays)."""
    if kind == "dense-spd":
        return 3 * 8 * size * size
    n, per_row = {
        "poisson2d": (size**2, 5),
        "anisotropic2d": (size**2, 9),
        "poisson3d": (size**3, 7),
        "random-spd": (size, 10),
    }[kind]
    return 6 * 12 * n * per_row


def _available_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def make(
    kind: str,
    size: int,
    *,
    seed: int = 0,
    density: float = 0.001,
    eps: float = ANISOTROPIC_EPS,
    theta: float = ANISOTROPIC_THETA,
):
    """(A, b) of a `sorctl gen` kind, refused (InputError) when it would not fit in memory."""
    need, have = bytes_needed(kind, size), _available_bytes()
    if have is not None and need > have:
        raise InputError(
            f"{kind} --size {size} needs about {need / 1e9:.1f} GB of memory, "
            f"{have / 1e9:.1f} GB is available"
        )
    if kind == "random-spd":
        return random_spd(size, density, seed)
    if kind == "dense-spd":
        return dense_spd(size, seed)
    g = Grid(kind, size, eps, theta)
    return g.matrix(), g.b()
