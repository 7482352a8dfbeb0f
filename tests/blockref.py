"""A block cut from a matrix held whole, the plain way (the reference the blocks the workers
make piece by piece are checked against), and blocks' records made as the workers make them."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sorctl.distributed.blocks import Assembly, Held, kept
from sorctl.distributed.rows import MatrixRows
from sorctl.solver.kernels.csr import split_tridiagonal


def reference_block(A: sp.csr_matrix, rows: np.ndarray):
    """(halo, split arrays) of the block of `rows`: columns in the block numbered by their
    row's place, halo columns nb + 1 + their rank, then csr.split_tridiagonal."""
    A = sp.csr_matrix(A)
    A.sum_duplicates()
    nb = rows.size
    where = np.full(A.shape[0], -1)
    where[rows] = np.arange(nb)
    sub = A[rows]
    local = where[sub.indices]
    halo = np.unique(sub.indices[local < 0])
    ext = np.where(local >= 0, local, nb + 1 + np.searchsorted(halo, sub.indices))
    return halo, split_tridiagonal(sub.indptr, ext.astype(np.int64), sub.data, nb)


def made_blocks(A, parts: list[np.ndarray], b=None, x=None, cuts=None, per: int = 7):
    """Each block as a worker makes it from A's rows sent in pieces of about `per` entries:
    (the block a worker keeps, its record)."""
    source = MatrixRows(sp.csr_matrix(A), per=per)
    n = source.n
    b = np.zeros(n) if b is None else b
    x = np.zeros(n) if x is None else x
    label = np.zeros(n, dtype=np.int64)
    for k, rows in enumerate(parts):
        label[rows] = k
    counts = np.diff(source.indptr)
    made = {k: Assembly(rows, n, int(counts[rows].sum())) for k, rows in enumerate(parts)}
    for k, piece in source.pieces(parts, label, list(range(len(parts)))):
        made[k].add(*piece)
    return [kept(*made[k].finish(), rows, b[rows], x[rows], cuts) for k, rows in enumerate(parts)]


def held_blocks(A, parts: list[np.ndarray], cuts=None) -> list[Held]:
    """Each block's record as a worker makes it."""
    return [held for _, held in made_blocks(A, parts, cuts=cuts)]
