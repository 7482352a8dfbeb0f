"""Kernels for CG preconditioned by SSOR with Eisenstat's trick, on a unit-diagonal matrix.

The matrix is A = L + I + U (scaled beforehand by D^-1/2 on both sides; SSOR is invariant under
that scaling) with L = U^T strictly lower. With c = 1/omega, Lc = cI + L and Uc = cI + U:

    A = Lc + Uc - (2c - 1) I,   so   Lc^-1 A Uc^-1 p = t + Lc^-1 (p - (2c - 1) t),  t = Uc^-1 p

i.e. the preconditioned operator costs one backward and one forward triangular solve, each over
half of A, and no matrix-vector product. CG runs on Lc^-1 A Uc^-1 (symmetric: Uc = Lc^T), whose
iterates, mapped back by x = Uc^-1 y, are those of CG preconditioned by Lc c^-1 Uc (SSOR).

CSR kernels take plain arrays (both strict triangles in one copy of the off-diagonal entries,
each row's lower ones first, so each solve reads only its half); the dense variant uses BLAS
dtrsv on one Fortran-order copy holding both halves.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.linalg import blas

from sorctl.solver.kernels.csr import split_tridiagonal

# The strict triangles of a unit-diagonal matrix as partition_scaled leaves them, in the sweeps'
# layout (sorctl.solver.kernels.csr.split_tridiagonal) with each row's far entries reordered:
# (fptr, mid, fidx, fval, lower, upper). Row i's lower triangle is fidx/fval[fptr[i]:mid[i]] and
# lower[i] (column i-1), its upper one fidx/fval[mid[i]:fptr[i+1]] and upper[i] (column i+1).
Triangles = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# One triangle as the solves take it: (start, end, idx, val, near), row i's entries
# idx/val[start[i]:end[i]] and near[i], its entry beside the diagonal
Triangle = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def split_scaled(indptr, indices, data, scale) -> Triangles:
    """The strict triangles of diag(scale) A diag(scale) (A square CSR, column indices of A's
    type), as partition_scaled leaves them: one copy of A's off-diagonal entries."""
    n = indptr.shape[0] - 1
    fptr, fidx, fval, lower, _, upper = split_tridiagonal(indptr, indices, data, n)
    mid = partition_scaled(fptr, fidx, fval, lower, upper, scale, np.arange(n))
    return fptr, mid, fidx, fval, lower, upper


def lower_of(tri: Triangles) -> Triangle:
    """The lower triangle, as forward_apply takes it (views, no copy)."""
    fptr, mid, fidx, fval, lower, _ = tri
    return fptr[:-1], mid, fidx, fval, lower


def upper_of(tri: Triangles) -> Triangle:
    """The upper triangle, as backward_direction takes it (views, no copy)."""
    fptr, mid, fidx, fval, _, upper = tri
    return mid, fptr[1:], fidx, fval, upper


@numba.njit(cache=True, nogil=True)
def partition_scaled(fptr, fidx, fval, lower, upper, scale, rank):
    """In place, a block kept in the sweeps' layout (csr.split_tridiagonal: far entries, then
    a_{i,i-1} and a_{i,i+1}) becomes the strict triangles of S A S (S = diag(scale), which
    covers every column): every entry scaled, and each row's far entries reordered (stably)
    below the diagonal first. Returns mid, where each row's upper entries start. A block's
    columns reach past its rows (sorctl.distributed.blocks): a far entry (i, j) is below the
    diagonal when rank[j] < i and above it when rank[j] > i (rank[j] = j for the block's own
    rows, below 0 or past every row for values of blocks solved before or after it). In place,
    so a block's rows are held once: the split rows are gone, not kept beside their triangles."""
    n = fptr.shape[0] - 1
    mid = np.empty(n, dtype=fptr.dtype)
    width = 0
    for i in range(n):
        width = max(width, fptr[i + 1] - fptr[i])
    above_idx, above_val = np.empty(width, fidx.dtype), np.empty(width)
    for i in range(n):
        si = scale[i]
        w, m = fptr[i], 0
        for k in range(fptr[i], fptr[i + 1]):  # w <= k: the row is read before it is written
            j = fidx[k]
            v = si * fval[k] * scale[j]
            if rank[j] < i:
                fidx[w], fval[w] = j, v
                w += 1
            else:
                above_idx[m], above_val[m] = j, v
                m += 1
        mid[i] = w
        fidx[w : w + m] = above_idx[:m]
        fval[w : w + m] = above_val[:m]
        if lower[i] != 0.0:
            lower[i] = si * lower[i] * scale[i - 1]
        if upper[i] != 0.0:
            upper[i] = si * upper[i] * scale[i + 1]
    return mid


@numba.njit(cache=True, nogil=True)
def scaled_residual(fptr, fidx, fval, lower, upper, scale, b, x, g):
    """From a block's scaled triangles alone (partition_scaled's, with their scale): g = S b -
    (S A S) S^-1 x on its rows, x with its halo, S = diag(scale); returns ||b - A x||^2 over
    them (b - A x = g / scale). An empty g: the norm alone."""
    keep = g.shape[0] > 0
    n = b.shape[0]
    total = 0.0
    for i in range(n):
        si = scale[i]
        acc = si * b[i] - x[i] / si  # the unit diagonal
        if i > 0:
            acc -= lower[i] * (x[i - 1] / scale[i - 1])
        if i + 1 < n:
            acc -= upper[i] * (x[i + 1] / scale[i + 1])
        for k in range(fptr[i], fptr[i + 1]):
            j = fidx[k]
            acc -= fval[k] * (x[j] / scale[j])
        if keep:
            g[i] = acc
        ri = acc / si
        total += ri * ri
    return total


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def backward_direction(start, end, idx, val, near, omega, r, p, beta, t):
    """p <- r + beta p, and t = (I/omega + U)^-1 p, rows n-1..0, in one pass (U: upper_of's)."""
    backward_direction_rows(start, end, idx, val, near, omega, r, p, beta, t, 0, r.shape[0])


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def backward_direction_rows(start, end, idx, val, near, omega, r, p, beta, t, lo, hi):
    """backward_direction over rows hi-1..lo; a range ending before row n continues a solve
    (t[hi] is final). t may be longer than r (a block's halo follows its rows).

    As in the SOR kernels, the entry in column i+1 (near[i]) is kept aside and t[i+1] (in a
    register) is folded in last, so the row's other loads do not wait for the previous row.
    """
    tnext = t[hi] if hi < r.shape[0] else 0.0
    for i in range(hi - 1, lo - 1, -1):
        pi = r[i] + beta * p[i]
        p[i] = pi
        acc = pi
        for k in range(np.uintp(start[i]), np.uintp(end[i])):
            acc -= val[k] * t[np.uintp(idx[k])]
        base = omega * acc
        ti = base - (omega * near[i]) * tnext
        t[i] = ti
        tnext = ti


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def forward_apply(start, end, idx, val, near, omega, p, t, s):
    """s = (I/omega + L)^-1 (p - (2/omega - 1) t), rows 0..n-1 (L: lower_of's); returns
    p . (t + s), the curvature p^T (Lc^-1 A Uc^-1) p (with t = Uc^-1 p; with t = 0 it is a
    plain forward solve)."""
    return forward_apply_rows(start, end, idx, val, near, omega, p, t, s, 0, p.shape[0])


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def forward_apply_rows(start, end, idx, val, near, omega, p, t, s, lo, hi):
    """forward_apply over rows lo..hi-1, returning those rows' share of p . (t + s); a range
    starting past row 0 continues a solve (s[lo-1] is final). s may be longer than p."""
    k2 = 2.0 / omega - 1.0
    pq = 0.0
    sprev = s[lo - 1] if lo > 0 else 0.0
    for i in range(lo, hi):
        pi = p[i]
        ti = t[i]
        acc = pi - k2 * ti
        for k in range(np.uintp(start[i]), np.uintp(end[i])):
            acc -= val[k] * s[np.uintp(idx[k])]
        base = omega * acc
        si = base - (omega * near[i]) * sprev
        s[i] = si
        sprev = si
        pq += pi * (ti + si)
    return pq


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def cg_update(alpha, t, s, x, r):
    """x += alpha t, r -= alpha (t + s) (q = t + s is the operator applied to p); returns r . r."""
    rr = 0.0
    for i in range(r.shape[0]):
        ti = t[i]
        x[i] += alpha * ti
        ri = r[i] - alpha * (ti + s[i])
        r[i] = ri
        rr += ri * ri
    return rr


class DenseEisenstat:
    """The two triangular solves on a dense unit-diagonal matrix: one Fortran-order copy with
    1/omega on its diagonal serves both (dtrsv reads only the triangle it is told to)."""

    def __init__(self, A: np.ndarray, omega: float) -> None:
        self.M = np.array(A, dtype=np.float64, order="F", copy=True)
        self.M[np.diag_indices_from(self.M)] = 1.0 / omega
        self.k2 = 2.0 / omega - 1.0

    def backward_direction(self, r, p, beta, t) -> None:
        p *= beta
        p += r
        t[:] = blas.dtrsv(self.M, p, lower=0)

    def forward_apply(self, p, t, s) -> float:
        s[:] = blas.dtrsv(self.M, p - self.k2 * t, lower=1)
        return float(p @ t + p @ s)
