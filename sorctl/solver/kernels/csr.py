"""Compiled SOR sweeps on plain CSR arrays (no scipy objects: node code calls these on blocks).

Every kernel updates x in place with the textbook rule
    x_i <- x_i + omega / a_ii * (b_i - sum_j a_ij x_j)
which is the same iterate as (1 - omega) x_i + omega / a_ii (b_i - sum_{j != i} a_ij x_j).
The SOR sweeps take A split once by `split_tridiagonal` (see there). Indices must be sorted
within each row only for speed, not for correctness. Arrays are indexed
through unsigned integers: numba then skips its negative-index wraparound, which was a third of
the instructions of the inner loop (inputs are validated, so no index is negative).
"""

from __future__ import annotations

import numba
import numpy as np

# What split_tridiagonal returns: (fptr, fidx, fval, lower, diag, upper)
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@numba.njit(cache=True, nogil=True)
def split_tridiagonal(indptr, indices, data, n):
    """A's first n rows as the layout the SOR sweeps take: three vectors lower, diag, upper
    (a_{i,i-1}, a_ii, a_{i,i+1}; 0 where absent, duplicates summed) and the other entries
    ("far": |j - i| > 1) as CSR arrays of A's index types. Returns
    (fptr, fidx, fval, lower, diag, upper).

    Columns past n (a block's halo) are far by construction: a block leaves column n unused.
    """
    nfar = 0
    for i in range(n):
        for k in range(indptr[i], indptr[i + 1]):
            if abs(np.int64(indices[k]) - i) > 1:
                nfar += 1
    fptr = np.zeros(n + 1, dtype=indptr.dtype)
    fidx = np.empty(nfar, dtype=indices.dtype)
    fval = np.empty(nfar, dtype=np.float64)
    lower, diag, upper = np.zeros(n), np.zeros(n), np.zeros(n)
    split_rows_into(indptr[: n + 1], indices, data, 0, fptr, fidx, fval, lower, diag, upper, 0)
    return fptr, fidx, fval, lower, diag, upper


@numba.njit(cache=True, nogil=True)
def split_rows_into(indptr, indices, data, r0, fptr, fidx, fval, lower, diag, upper, c):
    """Rows r0, r0 + 1, ... of the split layout (as split_tridiagonal makes it) from CSR rows
    whose columns are already the layout's: row i of `indptr` is row r0 + i. Their far entries
    go on from fidx[c]; returns the next c. (A block made piece by piece: sorctl.distributed.
    blocks.Assembly.)"""
    for i in range(indptr.shape[0] - 1):
        row = r0 + i
        for k in range(indptr[i], indptr[i + 1]):
            d = np.int64(indices[k]) - row
            if d == -1:
                lower[row] += data[k]
            elif d == 0:
                diag[row] += data[k]
            elif d == 1:
                upper[row] += data[k]
            else:
                fidx[c] = indices[k]
                fval[c] = data[k]
                c += 1
        fptr[row + 1] = c
    return c


# 'contract' lets LLVM fuse a*b+c into one FMA (fewer roundings, a shorter chain); no reassociation.
@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def sor_forward_rows(fptr, fidx, fval, lower, diag, upper, b, x, omega, lo, hi):
    """One lexicographic SOR sweep over rows lo..hi-1 (a whole sweep when lo = 0, hi = n), on
    the split_tridiagonal layout.

    x[i-1] (just written, held in a register) is folded in last through lower[i], so the row's
    other loads and products do not wait for the previous row: that dependency chain, not
    memory, bounds a literal loop. The diagonal and both neighbours come from vectors, so the
    far entries are a plain dot product with no test per entry, and A's bytes per sweep drop by
    the three central columns' indices. A range that starts past row 0 continues a sweep:
    x[lo-1] was written by the range before it.
    """
    n = diag.shape[0]
    xprev = x[lo - 1] if lo > 0 else 0.0
    start = np.uintp(fptr[lo])
    for i in range(lo, hi):
        end = np.uintp(fptr[i + 1])
        xi0 = x[i]
        di = diag[i]
        xnext = x[i + 1] if i + 1 < n else 0.0  # the old value: not yet swept
        acc = b[i] - di * xi0 - upper[i] * xnext
        for k in range(start, end):
            acc -= fval[k] * x[np.uintp(fidx[k])]
        start = end
        w = omega / di
        base = xi0 + w * acc  # off the chain: ready before xprev is
        xi = base - (w * lower[i]) * xprev
        x[i] = xi
        xprev = xi


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def sor_backward_rows(fptr, fidx, fval, lower, diag, upper, b, x, omega, lo, hi):
    """One SOR sweep in reverse order over rows hi-1..lo (the second half of an SSOR sweep), on
    the split_tridiagonal layout; x[i+1] is the one folded in last. A range that ends before
    row n continues a sweep: x[hi] was written by the range before it."""
    n = diag.shape[0]
    xnext = x[hi] if hi < n else 0.0
    for i in range(hi - 1, lo - 1, -1):
        xi0 = x[i]
        di = diag[i]
        xprev = x[i - 1] if i > 0 else 0.0  # the old value: not yet swept
        acc = b[i] - di * xi0 - lower[i] * xprev
        for k in range(np.uintp(fptr[i]), np.uintp(fptr[i + 1])):
            acc -= fval[k] * x[np.uintp(fidx[k])]
        w = omega / di
        base = xi0 + w * acc  # off the chain: ready before xnext is
        xi = base - (w * upper[i]) * xnext
        x[i] = xi
        xnext = xi


@numba.njit(cache=True, nogil=True)
def sor_forward(fptr, fidx, fval, lower, diag, upper, b, x, omega, sweeps):
    """`sweeps` lexicographic SOR sweeps, rows 0..n-1 (split_tridiagonal layout)."""
    for _ in range(sweeps):
        sor_forward_rows(fptr, fidx, fval, lower, diag, upper, b, x, omega, 0, diag.shape[0])


@numba.njit(cache=True, nogil=True)
def sor_backward(fptr, fidx, fval, lower, diag, upper, b, x, omega, sweeps):
    """`sweeps` SOR sweeps in reverse order, rows n-1..0 (split_tridiagonal layout)."""
    for _ in range(sweeps):
        sor_backward_rows(fptr, fidx, fval, lower, diag, upper, b, x, omega, 0, diag.shape[0])


@numba.njit(cache=True, nogil=True)
def ssor(fptr, fidx, fval, lower, diag, upper, b, x, omega, sweeps):
    """`sweeps` symmetric sweeps: a forward SOR sweep then a backward one."""
    for _ in range(sweeps):
        sor_forward(fptr, fidx, fval, lower, diag, upper, b, x, omega, 1)
        sor_backward(fptr, fidx, fval, lower, diag, upper, b, x, omega, 1)


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def split_matvec(fptr, fidx, fval, lower, diag, upper, x, y):
    """y = A x for the first n rows (n = y.size) of A in the split_tridiagonal layout."""
    n = diag.shape[0]
    for i in range(n):
        s = diag[i] * x[i]
        if i > 0:
            s += lower[i] * x[i - 1]
        if i + 1 < n:
            s += upper[i] * x[i + 1]
        for k in range(np.uintp(fptr[i]), np.uintp(fptr[i + 1])):
            s += fval[k] * x[np.uintp(fidx[k])]
        y[i] = s


@numba.njit(cache=True, nogil=True)
def split_residual_norm2(fptr, fidx, fval, lower, diag, upper, b, x):
    """||b - A x||^2 over A's rows in the split_tridiagonal layout (one pass, no vector)."""
    n = diag.shape[0]
    s = 0.0
    for i in range(n):
        r = b[i] - diag[i] * x[i]
        if i > 0:
            r -= lower[i] * x[i - 1]
        if i + 1 < n:
            r -= upper[i] * x[i + 1]
        for k in range(np.uintp(fptr[i]), np.uintp(fptr[i + 1])):
            r -= fval[k] * x[np.uintp(fidx[k])]
        s += r * r
    return s


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
