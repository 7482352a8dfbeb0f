"""The blocks of a distributed solve: a block made on its worker from the rows sent to it
(Assembly), what the driver keeps of it (Held), and the links between blocks.

A block's unknowns live in one "extended" vector on its node:
    xext = [ x_b (nb values) | one unused slot | halo values (nh values) ]
and its rows are held split for the sweeps (csr.split_tridiagonal's layout: the i-1, i, i+1
columns as vectors, the other entries as CSR whose column indices point into xext). The unused
slot keeps column nb out of every row, so the compiled kernels' "split row" trick (columns i-1
and i+1 are folded in last) never mistakes a halo column for the neighbouring row of the block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sorctl.distributed.node_block import SPLIT
from sorctl.solver.kernels.csr import split_rows_into


@dataclass
class Held:
    """What the driver keeps of a block a worker holds: its rows, its halo and its size (and,
    for pipelined strips, which of its chunks read each halo slot first and last)."""

    rows: np.ndarray
    halo: np.ndarray
    nnz: int
    nbytes: int
    first_read: np.ndarray | None = None
    last_read: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.rows.size)


class Assembly:
    """A block made on its worker as its rows arrive in its sweep order (`add`, one piece of
    whole rows at a time): each piece is split for the sweeps at once (csr.split_rows_into),
    with columns inside the block numbered by their row's place in it and columns outside it
    marked -(j + 2) (never within one of the row) until `finish` knows the halo. So the worker
    never holds the block's rows twice. Duplicates are summed, as sorctl.solver.io does for a
    whole A. `entries`: at most this many entries arrive (the file's count for these rows)."""

    def __init__(self, rows: np.ndarray, n: int, entries: int) -> None:
        nb = rows.size
        self.rows, self.n = rows, n
        self.order = np.argsort(rows, kind="stable")
        self.ranked = rows[self.order]
        self.itype = np.int32 if n + 2 < 2**31 and entries < 2**31 else np.int64
        self.fptr = np.zeros(nb + 1, dtype=self.itype)
        self.fidx = np.empty(entries, dtype=self.itype)
        self.fval = np.empty(entries)
        self.lower, self.diag, self.upper = np.zeros(nb), np.zeros(nb), np.zeros(nb)
        self.far = 0  # far entries so far
        self.filled = 0  # rows so far
        self.nnz = 0

    def add(self, rows: np.ndarray, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray):
        """The block's next rows (global numbers, their CSR row pointer from 0, their global
        columns and values)."""
        r0, count = self.filled, rows.size
        if not np.array_equal(rows, self.rows[r0 : r0 + count]):
            raise ValueError(f"rows {rows[:3].tolist()}... are not the block's next rows")
        sub = sp.csr_matrix((data, indices, indptr), shape=(count, self.n))
        sub.sum_duplicates()
        if self.far + sub.nnz > self.fidx.size:
            raise ValueError(f"more than the {self.fidx.size} entries announced")
        cols = sub.indices.astype(np.int64)
        at = np.minimum(np.searchsorted(self.ranked, cols), self.rows.size - 1)
        inside = self.ranked[at] == cols
        codes = np.where(inside, self.order[at], -(cols + 2)).astype(self.itype)
        self.far = split_rows_into(
            sub.indptr, codes, sub.data, r0, self.fptr, self.fidx, self.fval,
            self.lower, self.diag, self.upper, self.far,
        )  # fmt: skip
        self.filled += count
        self.nnz += sub.nnz

    def finish(self) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
        """(the block's rows split for the sweeps, by the names of node_block.SPLIT, its halo,
        its entries): halo columns numbered nb + 1 + their rank in the halo."""
        nb = self.rows.size
        if self.filled != nb:
            raise ValueError(f"{self.filled} of the block's {nb} rows arrived")
        for name in ("fidx", "fval"):  # trimmed in place: announced entries that were duplicates
            getattr(self, name).resize(self.far, refcheck=False)
        fidx: np.ndarray = self.fidx
        out = np.flatnonzero(fidx < 0)
        cols = -(fidx[out].astype(np.int64) + 2)
        halo = np.unique(cols)
        fidx[out] = nb + 1 + np.searchsorted(halo, cols)
        split = (self.fptr, fidx, self.fval, self.lower, self.diag, self.upper)
        return dict(zip(SPLIT, split, strict=True)), halo, self.nnz


def kept(
    split: dict[str, np.ndarray], halo: np.ndarray, nnz: int, rows: np.ndarray, b: np.ndarray,
    x_b: np.ndarray, cuts: np.ndarray | None,
) -> tuple[dict[str, np.ndarray], Held]:  # fmt: skip
    """The block as the worker keeps it (sorctl.distributed.node_block: its split rows, b and
    xext) and its record; `cuts`: the pipeline's chunk cuts (sorctl.distributed.pipeline.
    chunk_cuts), for the first and last chunk of the block that read each halo slot."""
    nb = rows.size
    first = last = None
    if cuts is not None:
        fptr, fidx = split["fptr"], split["fidx"]
        out = np.flatnonzero(fidx > nb)  # the halo's entries
        slot = fidx[out].astype(np.int64) - (nb + 1)
        row = np.searchsorted(fptr, out, side="right") - 1
        chunk = np.searchsorted(cuts, rows[row], side="right") - 1
        first = np.full(halo.size, np.iinfo(np.int64).max)
        last = np.full(halo.size, -1, dtype=np.int64)
        np.minimum.at(first, slot, chunk)
        np.maximum.at(last, slot, chunk)
    blk = dict(split)
    blk["b"] = np.ascontiguousarray(b, dtype=np.float64)
    nbytes = sum(a.nbytes for a in blk.values())
    xext = np.zeros(nb + 1 + halo.size)
    xext[:nb] = x_b
    blk["xext"] = xext
    return blk, Held(rows, halo, nnz, nbytes, first, last)


@dataclass
class Link:
    """Values block `src` hands to block `dst` after each of its sweeps."""

    src: int
    dst: int
    rows: np.ndarray  # local rows of src
    slots: np.ndarray  # halo slots of dst they fill, in the same order


def links(blocks: Sequence[Held], n: int) -> list[Link]:
    """Every (src, dst) pair where dst's rows read some of src's unknowns."""
    small = np.int32 if n < 2**31 else np.int64  # two n-long maps: no wider than they need
    owner = np.full(n, -1, dtype=np.int32)
    pos = np.zeros(n, dtype=small)
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
