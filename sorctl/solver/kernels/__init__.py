"""SOR sweeps on CSR or dense matrices, in place on x.

`make_sweeper(A, omega, method)` does the per-matrix work once (A's split, the dense copy with
D/omega on its diagonal, the colouring and permutation) and returns `sweep(b, x, sweeps)`; the
one-shot functions below are for callers that sweep a matrix only once. The plain-array numba
kernels live in `sorctl.solver.kernels.csr` (the distributed node code calls them on blocks).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from sorctl.solver.kernels import csr
from sorctl.solver.kernels.dense import DenseSOR
from sorctl.solver.kernels.multicolor import MulticolourSOR

METHODS = ("sor", "ssor", "multicolor")

Sweep = Callable[[np.ndarray, np.ndarray, int], None]


def make_sweeper(A, omega: float, method: str = "sor") -> Sweep:
    """Prepare `sweep(b, x, sweeps)` for A (CSR or dense ndarray) and omega."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "multicolor" and not isinstance(A, np.ndarray):
        return MulticolourSOR(_as_csr(A), omega).forward
    if isinstance(A, np.ndarray):
        # A dense matrix's graph is complete: greedy colouring gives every row its own colour in
        # natural order, i.e. plain SOR, so 'multicolor' on a dense A is the BLAS forward sweep.
        dense = DenseSOR(A, omega)
        if method in ("sor", "multicolor"):
            return dense.forward

        def dense_ssor(b: np.ndarray, x: np.ndarray, sweeps: int = 1) -> None:
            for _ in range(sweeps):
                dense.forward(b, x, 1)
                dense.backward(b, x, 1)

        return dense_ssor
    A = _as_csr(A)
    # Split once (the lower, diagonal and upper vectors, the other entries as CSR): a second
    # copy a little smaller than A, and fewer bytes than A for each sweep to read.
    split: csr.Split = csr.split_tridiagonal(A.indptr, A.indices, A.data, A.shape[0])
    kernel = csr.sor_forward if method == "sor" else csr.ssor
    w = float(omega)

    def csr_sweep(b: np.ndarray, x: np.ndarray, sweeps: int = 1) -> None:
        kernel(*split, b, x, w, sweeps)

    return csr_sweep


def sor_sweeps(A, b: np.ndarray, x: np.ndarray, omega: float, sweeps: int = 1) -> None:
    """Lexicographic SOR sweeps (rows 0..n-1), in place on x."""
    make_sweeper(A, omega, "sor")(b, x, sweeps)


def ssor_sweeps(A, b: np.ndarray, x: np.ndarray, omega: float, sweeps: int = 1) -> None:
    """Symmetric SOR sweeps (forward then backward), in place on x."""
    make_sweeper(A, omega, "ssor")(b, x, sweeps)


def multicolor_sweeps(A, b: np.ndarray, x: np.ndarray, omega: float, sweeps: int = 1) -> None:
    """SOR sweeps in greedy multicolour order (colours in parallel), in place on x."""
    make_sweeper(A, omega, "multicolor")(b, x, sweeps)


def residual_norm(A, b: np.ndarray, x: np.ndarray) -> float:
    """||b - A x||_2 (about the cost of one sweep)."""
    if isinstance(A, np.ndarray):
        return float(np.linalg.norm(b - A @ x))
    A = _as_csr(A)
    return float(np.sqrt(csr.residual_norm2(A.indptr, A.indices, A.data, b, x)))


def _as_csr(A) -> sp.csr_matrix:
    if isinstance(A, np.ndarray):
        return sp.csr_matrix(A)
    if sp.issparse(A) and A.format == "csr":
        return A
    return sp.csr_matrix(A)
