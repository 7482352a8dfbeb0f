"""Kernels for CG preconditioned by SSOR with Eisenstat's trick, on a unit-diagonal matrix.

The matrix is A = L + I + U (scaled beforehand by D^-1/2 on both sides; SSOR is invariant under
that scaling) with L = U^T strictly lower. With c = 1/omega, Lc = cI + L and Uc = cI + U:

    A = Lc + Uc - (2c - 1) I,   so   Lc^-1 A Uc^-1 p = t + Lc^-1 (p - (2c - 1) t),  t = Uc^-1 p

i.e. the preconditioned operator costs one backward and one forward triangular solve, each over
half of A, and no matrix-vector product. CG runs on Lc^-1 A Uc^-1 (symmetric: Uc = Lc^T), whose
iterates, mapped back by x = Uc^-1 y, are those of CG preconditioned by Lc c^-1 Uc (SSOR).

CSR kernels take plain arrays (the strict triangles as separate CSR arrays, so each solve reads
only its half); the dense variant uses BLAS dtrsv on one Fortran-order copy holding both halves.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.linalg import blas

from sorctl.solver.kernels.csr import split_tridiagonal


def split_scaled(indptr, indices, data, scale):
    """The strict lower and upper triangles of diag(scale) A diag(scale) (A square CSR), as
    two CSR triples (column indices of A's type): through the sweeps' layout, as a block's."""
    n = indptr.shape[0] - 1
    fptr, fidx, fval, lower, _, upper = split_tridiagonal(indptr, indices, data, n)
    return split_ranked(fptr, fidx, fval, lower, upper, scale, np.arange(n))


@numba.njit(cache=True, nogil=True)
def split_ranked(fptr, fidx, fval, lower, upper, scale, rank):
    """split_scaled for a block kept in the sweeps' layout (sorctl.solver.kernels.csr.
    split_tridiagonal: far entries, then a_{i,i-1} and a_{i,i+1}), whose columns reach past its
    rows (sorctl.distributed.blocks): a far entry (i, j) is below the diagonal when rank[j] < i
    and above it when rank[j] > i (rank[j] = j for the block's own rows, below 0 or past every
    row for values of blocks solved before or after it). scale covers every column."""
    n = fptr.shape[0] - 1
    lptr = np.zeros(n + 1, dtype=fptr.dtype)  # no more entries than the split rows' pointer
    uptr = np.zeros(n + 1, dtype=fptr.dtype)
    for i in range(n):
        nl = 1 if lower[i] != 0.0 else 0
        nu = 1 if upper[i] != 0.0 else 0
        for k in range(fptr[i], fptr[i + 1]):
            if rank[fidx[k]] < i:
                nl += 1
            else:
                nu += 1
        lptr[i + 1] = lptr[i] + nl
        uptr[i + 1] = uptr[i] + nu
    lidx, uidx = np.empty(lptr[n], fidx.dtype), np.empty(uptr[n], fidx.dtype)
    lval, uval = np.empty(lptr[n]), np.empty(uptr[n])
    for i in range(n):
        a, c = lptr[i], uptr[i]
        si = scale[i]
        for k in range(fptr[i], fptr[i + 1]):
            j = fidx[k]
            if rank[j] < i:
                lidx[a], lval[a] = j, si * fval[k] * scale[j]
                a += 1
            else:
                uidx[c], uval[c] = j, si * fval[k] * scale[j]
                c += 1
        if lower[i] != 0.0:
            lidx[a], lval[a] = i - 1, si * lower[i] * scale[i - 1]
        if upper[i] != 0.0:
            uidx[c], uval[c] = i + 1, si * upper[i] * scale[i + 1]
    return lptr, lidx, lval, uptr, uidx, uval


@numba.njit(cache=True, nogil=True)
def scaled_residual(lptr, lidx, lval, uptr, uidx, uval, scale, b, x, g):
    """From a block's scaled triangles alone (split_ranked's, with their scale): g = S b - (S A
    S) S^-1 x on its rows, x with its halo, S = diag(scale); returns ||b - A x||^2 over them
    (b - A x = g / scale). An empty g: the norm alone."""
    keep = g.shape[0] > 0
    total = 0.0
    for i in range(b.shape[0]):
        si = scale[i]
        acc = si * b[i] - x[i] / si  # the unit diagonal
        for k in range(lptr[i], lptr[i + 1]):
            j = lidx[k]
            acc -= lval[k] * (x[j] / scale[j])
        for k in range(uptr[i], uptr[i + 1]):
            j = uidx[k]
            acc -= uval[k] * (x[j] / scale[j])
        if keep:
            g[i] = acc
        ri = acc / si
        total += ri * ri
    return total


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def backward_direction(uptr, uidx, uval, omega, r, p, beta, t):
    """p <- r + beta p, and t = (I/omega + U)^-1 p, rows n-1..0, in one pass."""
    backward_direction_rows(uptr, uidx, uval, omega, r, p, beta, t, 0, r.shape[0])


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def backward_direction_rows(uptr, uidx, uval, omega, r, p, beta, t, lo, hi):
    """backward_direction over rows hi-1..lo; a range ending before row n continues a solve
    (t[hi] is final). t may be longer than r (a block's halo follows its rows).

    As in the SOR kernels, the entry in column i+1 is kept aside and t[i+1] (in a register) is
    folded in last, so the row's other loads do not wait for the previous row.
    """
    tnext = t[hi] if hi < r.shape[0] else 0.0
    for i in range(hi - 1, lo - 1, -1):
        pi = r[i] + beta * p[i]
        p[i] = pi
        acc = pi
        cnext = 0.0
        ip1 = np.uintp(i + 1)
        for k in range(np.uintp(uptr[i]), np.uintp(uptr[i + 1])):
            j = np.uintp(uidx[k])
            if j == ip1:
                cnext += uval[k]
            else:
                acc -= uval[k] * t[j]
        base = omega * acc
        ti = base - (omega * cnext) * tnext
        t[i] = ti
        tnext = ti


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def forward_apply(lptr, lidx, lval, omega, p, t, s):
    """s = (I/omega + L)^-1 (p - (2/omega - 1) t), rows 0..n-1; returns p . (t + s), the
    curvature p^T (Lc^-1 A Uc^-1) p (with t = Uc^-1 p; with t = 0 it is a plain forward solve)."""
    return forward_apply_rows(lptr, lidx, lval, omega, p, t, s, 0, p.shape[0])


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def forward_apply_rows(lptr, lidx, lval, omega, p, t, s, lo, hi):
    """forward_apply over rows lo..hi-1, returning those rows' share of p . (t + s); a range
    starting past row 0 continues a solve (s[lo-1] is final). s may be longer than p."""
    k2 = 2.0 / omega - 1.0
    pq = 0.0
    sprev = s[lo - 1] if lo > 0 else 0.0
    for i in range(lo, hi):
        pi = p[i]
        ti = t[i]
        acc = pi - k2 * ti
        cprev = 0.0
        im1 = np.uintp(i - 1)  # wraps at i = 0, so it matches no column
        for k in range(np.uintp(lptr[i]), np.uintp(lptr[i + 1])):
            j = np.uintp(lidx[k])
            if j == im1:
                cprev += lval[k]
            else:
                acc -= lval[k] * s[j]
        base = omega * acc
        si = base - (omega * cprev) * sprev
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
