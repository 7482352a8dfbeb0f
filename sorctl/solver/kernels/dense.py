"""SOR on a dense matrix by block rows: one gemv per block row, a small triangular solve per block.

Lexicographic SOR in correction form is x_I <- x_I + (D_I/w + L_II)^-1 g_I with
g_I = b_I - A[I, :] x, where x already holds the new values of the block rows before I and the
old ones after it (the triangular form (D + wL) x' = w b - (wU + (w-1)D) x, taken a block row at
a time). So each sweep reads every row of A once with dgemv -- 8 n^2 bytes, the memory bound --
and solves the nb x nb diagonal blocks, which stay in cache, with dtrsv. A itself is not copied;
only the diagonal blocks are (with D/w on their diagonal, in Fortran order for BLAS).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

BLOCK = 256  # rows per block: the diagonal block (512 KB) stays in L2


class DenseSOR:
    """Prepared forward/backward SOR sweeps for one dense matrix and one omega."""

    def __init__(self, A: np.ndarray, omega: float, block: int = BLOCK) -> None:
        self.A = np.ascontiguousarray(A, dtype=np.float64)  # rows contiguous for dgemv
        n = self.A.shape[0]
        self.omega = float(omega)
        self.blocks = []
        for s in range(0, n, block):
            e = min(n, s + block)
            M = np.array(self.A[s:e, s:e], order="F", copy=True)
            M[np.diag_indices_from(M)] /= self.omega
            self.blocks.append((s, e, M))

    def forward(self, b: np.ndarray, x: np.ndarray, sweeps: int = 1) -> None:
        for _ in range(sweeps):
            for s, e, M in self.blocks:
                self._update(b, x, s, e, M, lower=1)

    def backward(self, b: np.ndarray, x: np.ndarray, sweeps: int = 1) -> None:
        for _ in range(sweeps):
            for s, e, M in reversed(self.blocks):
                self._update(b, x, s, e, M, lower=0)

    def _update(self, b, x, s, e, M, lower):
        g = b[s:e] - self.A[s:e] @ x
        # lower=1: rows in order (D/w + L); lower=0: reverse order (D/w + U)
        x[s:e] += blas.dtrsv(M, g, lower=lower, overwrite_x=1)
