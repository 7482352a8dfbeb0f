"""Compiled SOR sweeps on plain CSR arrays (no scipy objects: node code calls these on blocks).

Every kernel updates x in place with the textbook rule
    x_i <- x_i + omega / a_ii * (b_i - sum_j a_ij x_j)
which is the same iterate as (1 - omega) x_i + omega / a_ii (b_i - sum_{j != i} a_ij x_j).
Indices must be sorted within each row only for speed, not for correctness. Arrays are indexed
through unsigned integers: numba then skips its negative-index wraparound, which was a third of
the instructions of the inner loop (inputs are validated, so no index is negative).
"""

from __future__ import annotations

import numba
import numpy as np


# 'contract' lets LLVM fuse a*b+c into one FMA (fewer roundings, a shorter chain); no reassociation.
@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def sor_forward_rows(indptr, indices, data, diag, b, x, omega, lo, hi):
    """One lexicographic SOR sweep over rows lo..hi-1 (a whole sweep when lo = 0, hi = n).

    The "split row": the entry in column i-1 is kept aside and x[i-1] (just written, held in a
    register) is folded in last, so the row's other loads and products do not wait for the
    previous row. That dependency chain, not memory, bounds a literal loop. A range that starts
    past row 0 continues a sweep: x[lo-1] was written by the range before it.
    """
    xprev = x[lo - 1] if lo > 0 else 0.0
    start = np.uintp(indptr[lo])
    for i in range(lo, hi):
        end = np.uintp(indptr[i + 1])
        acc = b[i]
        cprev = 0.0
        im1 = np.uintp(i - 1)  # wraps at i = 0, so it matches no column
        for k in range(start, end):
            j = np.uintp(indices[k])
            if j == im1:
                cprev += data[k]
            else:
                acc -= data[k] * x[j]
        start = end
        w = omega / diag[i]
        base = x[i] + w * acc  # off the chain: ready before xprev is
        xi = base - (w * cprev) * xprev
        x[i] = xi
        xprev = xi


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def sor_backward_rows(indptr, indices, data, diag, b, x, omega, lo, hi):
    """One SOR sweep in reverse order over rows hi-1..lo (the second half of an SSOR sweep). A
    range that ends before row n continues a sweep: x[hi] was written by the range before it."""
    xnext = x[hi] if hi < diag.shape[0] else 0.0
    for i in range(hi - 1, lo - 1, -1):
        acc = b[i]
        cnext = 0.0
        ip1 = np.uintp(i + 1)
        for k in range(np.uintp(indptr[i]), np.uintp(indptr[i + 1])):
            j = np.uintp(indices[k])
            if j == ip1:
                cnext += data[k]
            else:
                acc -= data[k] * x[j]
        w = omega / diag[i]
        base = x[i] + w * acc  # off the chain: ready before xnext is
        xi = base - (w * cnext) * xnext
        x[i] = xi
        xnext = xi


@numba.njit(cache=True, nogil=True)
def sor_forward(indptr, indices, data, diag, b, x, omega, sweeps):
    """`sweeps` lexicographic SOR sweeps, rows 0..n-1."""
    for _ in range(sweeps):
        sor_forward_rows(indptr, indices, data, diag, b, x, omega, 0, diag.shape[0])


@numba.njit(cache=True, nogil=True)
def sor_backward(indptr, indices, data, diag, b, x, omega, sweeps):
    """`sweeps` SOR sweeps in reverse order, rows n-1..0."""
    for _ in range(sweeps):
        sor_backward_rows(indptr, indices, data, diag, b, x, omega, 0, diag.shape[0])


@numba.njit(cache=True, nogil=True)
def ssor(indptr, indices, data, diag, b, x, omega, sweeps):
    """`sweeps` symmetric sweeps: a forward SOR sweep then a backward one."""
    for _ in range(sweeps):
        sor_forward(indptr, indices, data, diag, b, x, omega, 1)
        sor_backward(indptr, indices, data, diag, b, x, omega, 1)


@numba.njit(cache=True, parallel=True, nogil=True)
def sor_colours(indptr, indices, data, diag, b, x, omega, sweeps, colour_ptr):
    """SOR sweeps on a matrix whose rows are grouped by colour: rows colour_ptr[c]..colour_ptr[c+1]
    share no edge, so each colour's rows are updated in parallel with the same result as in order.
    """
    ncol = colour_ptr.shape[0] - 1
    for _ in range(sweeps):
        for c in range(ncol):
            for i in numba.prange(colour_ptr[c], colour_ptr[c + 1]):
                acc = b[i]
                for k in range(np.uintp(indptr[i]), np.uintp(indptr[i + 1])):
                    acc -= data[k] * x[np.uintp(indices[k])]
                x[i] += omega / diag[i] * acc


@numba.njit(cache=True)
def greedy_colouring(indptr, indices, n):
    """Greedy colouring of the graph of a (structurally symmetric) matrix in natural order:
    each row gets the smallest colour none of its neighbours has. Returns the colour of each row.
    """
    colour = np.full(n, -1, dtype=np.int64)
    mark = np.full(n + 1, -1, dtype=np.int64)  # mark[c] == i: colour c is taken by a neighbour of i
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j != i and colour[j] >= 0:
                mark[colour[j]] = i
        c = 0
        while mark[c] == i:
            c += 1
        colour[i] = c
    return colour


@numba.njit(cache=True, nogil=True)
def residual_norm2(indptr, indices, data, b, x):
    """||b - A x||^2 without forming the residual vector (one pass over A, like a sweep)."""
    n = b.shape[0]
    s = 0.0
    for i in range(n):
        r = b[i]
        for k in range(np.uintp(indptr[i]), np.uintp(indptr[i + 1])):
            r -= data[k] * x[np.uintp(indices[k])]
        s += r * r
    return s
