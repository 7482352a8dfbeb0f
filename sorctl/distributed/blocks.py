"""Per-block data: a block's rows of A in local numbering, its halo, and the links between blocks.

A block's unknowns live in one "extended" vector on its node:
    xext = [ x_b (nb values) | one unused slot | halo values (nh values) ]
and its rows of A are one CSR matrix whose column indices point into xext. The unused slot keeps
column nb out of every row, so the compiled kernels' "split row" trick (columns i-1 and i+1 are
folded in last) never mistakes a halo column for the neighbouring row of the block. The node
splits these rows once at load (csr.split_tridiagonal: the i-1, i, i+1 columns as vectors, the
rest as CSR) and sweeps that; the CSR here is what travels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: Arrays a node stores per block (all plain numeric arrays, saved and loaded without pickle).
NODE_ARRAYS = ("indptr", "indices", "data", "diag", "b")


@dataclass
class Block:
    rows: np.ndarray  # global row numbers, in sweep order (driver side only)
    halo: np.ndarray  # global numbers of the unknowns outside the block its rows couple to
    indptr: np.ndarray
    indices: np.ndarray  # into xext
    data: np.ndarray
    diag: np.ndarray
    b: np.ndarray

    @property
    def size(self) -> int:
        return int(self.rows.size)

    @property
    def nnz(self) -> int:
        return int(self.data.size)

    @property
    def ext_size(self) -> int:
        return self.size + 1 + int(self.halo.size)

    def node_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in NODE_ARRAYS}

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.node_arrays().values())


def build_blocks(A: sp.csr_matrix, b: np.ndarray, parts: list[np.ndarray]) -> list[Block]:
    """Cut A and b into blocks along `parts` (row sets that cover every row exactly once)."""
    return [make_block(np.asarray(rows, dtype=np.int64), A[rows], b[rows]) for rows in parts]


def make_block(rows: np.ndarray, sub: sp.csr_matrix, b: np.ndarray) -> Block:
    """The block of rows `rows` (sweep order) from their rows of A, `sub` (in that order, global
    column numbers; duplicates are summed here, as sorctl.solver.io does for a whole A)."""
    sub = sp.csr_matrix(sub)
    sub.sum_duplicates()
    nb = rows.size
    order = np.argsort(rows, kind="stable")
    ranked = rows[order]
    cols = sub.indices.astype(np.int64)
    at = np.minimum(np.searchsorted(ranked, cols), max(nb - 1, 0))
    inside = ranked[at] == cols if nb else np.zeros(cols.size, dtype=bool)
    local = np.where(inside, order[at], -1)
    halo = np.unique(cols[~inside])
    ext = local.copy()
    ext[~inside] = nb + 1 + np.searchsorted(halo, cols[~inside])
    row_of = np.repeat(np.arange(nb), np.diff(sub.indptr))
    on_diagonal = local == row_of
    diag = np.zeros(nb)
    diag[row_of[on_diagonal]] = sub.data[on_diagonal]  # one entry per row once summed
    itype = np.int32 if nb + 1 + halo.size < 2**31 and sub.nnz < 2**31 else np.int64
    return Block(
        rows=rows,
        halo=halo,
        indptr=sub.indptr.astype(itype),
        indices=ext.astype(itype),
        data=np.ascontiguousarray(sub.data, dtype=np.float64),
        diag=diag,
        b=np.ascontiguousarray(b, dtype=np.float64),
    )


def from_pieces(
    rows: np.ndarray, pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    n: int, b: np.ndarray,
) -> Block:  # fmt: skip
    """make_block from the pieces a worker was sent, in row order: (global rows, their CSR
    row pointer from 0, column numbers, values) each."""
    got = np.concatenate([p[0] for p in pieces]).astype(np.int64)
    lengths = np.concatenate([np.diff(p[1]) for p in pieces])
    indptr = np.zeros(got.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.concatenate([p[2] for p in pieces]).astype(np.int64)
    data = np.concatenate([p[3] for p in pieces]).astype(np.float64)
    if got.size != rows.size or np.any(np.diff(got) <= 0):
        raise ValueError(f"the pieces hold {got.size} rows in no order, the block {rows.size}")
    sub = sp.csr_matrix((data, indices, indptr), shape=(got.size, n))
    at = np.searchsorted(got, rows)
    if not np.array_equal(got[np.minimum(at, got.size - 1)], rows):
        raise ValueError("the pieces are not the block's rows")
    return make_block(rows, sub[at], b)


def reads(blk: Block, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per halo slot: the first and the last chunk (global rows cut at `cuts`) of this block's
    rows that read it (sorctl.distributed.pipeline waits on them)."""
    chunk_of = np.searchsorted(cuts, blk.rows, side="right") - 1
    row_chunk = np.repeat(chunk_of, np.diff(blk.indptr))
    halo = blk.indices.astype(np.int64) - (blk.size + 1)
    hit = halo >= 0
    first = np.full(blk.halo.size, np.iinfo(np.int64).max)
    last = np.full(blk.halo.size, -1, dtype=np.int64)
    np.minimum.at(first, halo[hit], row_chunk[hit])
    np.maximum.at(last, halo[hit], row_chunk[hit])
    return first, last


@dataclass
class Held:
    """What the driver keeps of a block a worker holds: its rows, its halo and its size (and,
    for pipelined strips, which of its chunks read each halo slot)."""

    rows: np.ndarray
    halo: np.ndarray
    nnz: int
    nbytes: int
    first_read: np.ndarray | None = None
    last_read: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.rows.size)

    @classmethod
    def of(cls, blk: Block, cuts: np.ndarray | None = None) -> Held:
        """A block's record; `cuts`: the pipeline's chunk cuts, for the halo's first and last
        readers."""
        first, last = reads(blk, cuts) if cuts is not None else (None, None)
        return cls(blk.rows, blk.halo, blk.nnz, blk.nbytes(), first, last)


@dataclass
class Link:
    """Values block `src` hands to block `dst` after each of its sweeps."""

    src: int
    dst: int
    rows: np.ndarray  # local rows of src
    slots: np.ndarray  # halo slots of dst they fill, in the same order


def links(blocks: Sequence[Block | Held], n: int) -> list[Link]:
    """Every (src, dst) pair where dst's rows read some of src's unknowns."""
    owner = np.full(n, -1, dtype=np.int64)
    pos = np.zeros(n, dtype=np.int64)
    for j, blk in enumerate(blocks):
        owner[blk.rows] = j
        pos[blk.rows] = np.arange(blk.size)
    out = []
    for k, blk in enumerate(blocks):
        src = owner[blk.halo]
        for j in np.unique(src).tolist():
            slots = np.flatnonzero(src == j)
            out.append(Link(j, k, pos[blk.halo[slots]], slots))
    return out
