"""Vector kernels for CG on a block: numba loops, not numpy's BLAS calls, whose threads spin
against the sweep kernels (and other processes) on a loaded node: a 32k-entry dot product took
2-5 ms instead of 5 us on a busy two-core machine. Vectors may be longer than n (a block's
extended vector: values, then the unused slot and the halo); only the first n entries count."""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, nogil=True)
def dot(a, b, n):
    """a[:n] . b[:n]"""
    s = 0.0
    for i in range(n):
        s += a[i] * b[i]
    return s


@numba.njit(cache=True, nogil=True)
def dots_rz_rr(r, z, n):
    """(r . z, r . r) over the first n entries, in one pass."""
    rz = rr = 0.0
    for i in range(n):
        ri = r[i]
        rz += ri * z[i]
        rr += ri * ri
    return rz, rr


@numba.njit(cache=True, nogil=True)
def direction(z, p, beta, n):
    """p <- z + beta p on the first n entries."""
    for i in range(n):
        p[i] = z[i] + beta * p[i]


@numba.njit(cache=True, nogil=True)
def step(alpha, p, q, x, r, n):
    """x += alpha p, r -= alpha q on the first n entries."""
    for i in range(n):
        x[i] += alpha * p[i]
        r[i] -= alpha * q[i]


@numba.njit(cache=True, nogil=True)
def lanczos_products(diag, lw, lv, lv_old, beta, gext, hext):
    """One Lanczos step's first pass over a block's rows (sorctl.distributed.node_lanczos), with
    s = diag^-1/2 made on the fly (one vector fewer to hold): lw holds y = A u and becomes
    w = s * y - beta * lv_old in place, gext[:n] = s * w and hext[:n] = s * lv (the values its
    neighbours make the next u from); returns the partial sums (lv . w, w . w, lv . lv)."""
    vw = ww = vv = 0.0
    for i in range(lv.shape[0]):
        si = 1.0 / math.sqrt(diag[i])
        wi = si * lw[i] - beta * lv_old[i]
        lw[i] = wi
        gext[i] = si * wi
        vi = lv[i]
        hext[i] = si * vi
        vw += vi * wi
        ww += wi * wi
        vv += vi * vi
    return vw, ww, vv


@numba.njit(cache=True, nogil=True)
def lanczos_next(diag, lw, lv, lv_old, uext, alpha, beta):
    """The step's second pass: lv_old <- lv, lv <- (lw - alpha lv) / beta, uext[:n] = s * lv."""
    for i in range(lv.shape[0]):
        vi = lv[i]
        v_new = (lw[i] - alpha * vi) / beta
        lv_old[i] = vi
        lv[i] = v_new
        uext[i] = (1.0 / math.sqrt(diag[i])) * v_new
