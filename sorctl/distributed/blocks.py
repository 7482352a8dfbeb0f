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
    n = A.shape[0]
    where = np.full(n, -1, dtype=np.int64)  # local position of a row inside the current block
    diagonal = A.diagonal()  # a_ii (duplicates summed)
    blocks = []
    for rows in parts:
        rows = np.asarray(rows, dtype=np.int64)
        nb = rows.size
        sub = A[rows]  # CSR row slice, rows in block order
        where[rows] = np.arange(nb)
        cols = sub.indices.astype(np.int64)
        local = where[cols]
        outside = local < 0
        halo = np.unique(cols[outside])
        ext = local.copy()
        ext[outside] = nb + 1 + np.searchsorted(halo, cols[outside])
        where[rows] = -1
        diag = np.ascontiguousarray(diagonal[rows], dtype=np.float64)
        itype = np.int32 if nb + 1 + halo.size < 2**31 and sub.nnz < 2**31 else np.int64
        blocks.append(
            Block(
                rows=rows,
                halo=halo,
                indptr=sub.indptr.astype(itype),
                indices=ext.astype(itype),
                data=np.ascontiguousarray(sub.data, dtype=np.float64),
                diag=diag,
                b=np.ascontiguousarray(b[rows], dtype=np.float64),
            )
        )
    return blocks


@dataclass
class Link:
    """Values block `src` hands to block `dst` after each of its sweeps."""

    src: int
    dst: int
    rows: np.ndarray  # local rows of src
    slots: np.ndarray  # halo slots of dst they fill, in the same order


def links(blocks: list[Block], n: int) -> list[Link]:
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
