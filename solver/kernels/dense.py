"""SOR on a dense matrix with two BLAS level-2 calls per half sweep (no Python loop over rows).

With A = L + D + U, a forward SOR sweep is the triangular system
    (D + w L) x' = w b - (w U + (w - 1) D) x,   i.e. (D/w + L) x' = b - U x - (1 - 1/w) D x,
so one trmv (U x, read as (I + U) x with a unit diagonal) and one trsv on a copy of A whose
diagonal is D/w. Each reads one triangle: a sweep moves about 8 n^2 bytes, the memory bound.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas


class DenseSOR:
    """Prepared forward/backward SOR sweeps for one dense matrix and one omega."""

    def __init__(self, A: np.ndarray, omega: float) -> None:
        self.d = np.ascontiguousarray(np.diag(A), dtype=np.float64)
        self.omega = float(omega)
        # Fortran order so BLAS reads it in place; the one copy per (A, omega).
        self.M = np.array(A, dtype=np.float64, order="F", copy=True)
        self.M[np.diag_indices_from(self.M)] = self.d / self.omega
        self._scale = 1.0 - (1.0 - 1.0 / self.omega) * self.d  # x coefficient on the right side

    def forward(self, b: np.ndarray, x: np.ndarray, sweeps: int = 1) -> None:
        trmv, trsv = blas.dtrmv, blas.dtrsv
        for _ in range(sweeps):
            y = trmv(self.M, x, lower=0, diag=1)  # (I + U) x
            rhs = b - y + self._scale * x  # b - U x - (1 - 1/w) D x
            x[:] = trsv(self.M, rhs, lower=1, overwrite_x=1)

    def backward(self, b: np.ndarray, x: np.ndarray, sweeps: int = 1) -> None:
        trmv, trsv = blas.dtrmv, blas.dtrsv
        for _ in range(sweeps):
            y = trmv(self.M, x, lower=1, diag=1)  # (I + L) x
            rhs = b - y + self._scale * x
            x[:] = trsv(self.M, rhs, lower=0, overwrite_x=1)
