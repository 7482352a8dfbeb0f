"""Where a cluster solve reads A's rows from, a window of whole rows at a time: a matrix the
driver holds (MatrixRows), an .npz of CSR arrays read as it streams (FileRows), or a grid
system whose rows each node makes itself (GridRows).

The driver plans from the row pointer and passes over the column indices (sorctl.distributed.
partition), then sends each window's rows to the workers that own them (sorctl.distributed.
driver), where the blocks are made (sorctl.distributed.blocks.Assembly). So a solve from a
file holds the row pointer, b, x and one window of A, never the matrix; a lost node's rows are
read again from the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from sorctl.errors import InputError
from sorctl.solver import io
from sorctl.solver.generated import Grid
from sorctl.solver.npz_stream import NpzStream, row_windows, window_cuts

# entries (column index and value) per window: 6 MB of int32 + float64 values; a worker's
# transient arrays while it takes in a piece are a few times its size
WINDOW_ENTRIES = 1 << 19
# after this many bytes read, the file's pages are dropped from the page cache: a container's
# memory cgroup counts the pages it reads, and the file is read in passes, never whole
DROP_CACHE_BYTES = 64 << 20


@dataclass
class Window:
    """Rows r0 .. r0 + len(indptr) - 2 of A: column indices (global) and values (or None when
    only the pattern was asked for), duplicates as the source holds them."""

    r0: int
    indptr: np.ndarray  # from 0
    indices: np.ndarray
    data: np.ndarray | None

    @property
    def r1(self) -> int:
        return self.r0 + self.indptr.size - 1

    def matrix(self, n: int) -> sp.csr_matrix:
        data = self.data if self.data is not None else np.ones(self.indices.size, dtype=np.int8)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=(self.r1 - self.r0, n))


class RowSource(Protocol):
    n: int
    indptr: np.ndarray  # n + 1 (entries as the source holds them, duplicates counted)

    def windows(
        self, start: int = 0, stop: int | None = None, values: bool = True
    ) -> Iterator[Window]:
        """Rows start .. stop in windows of about WINDOW_ENTRIES entries (one row if longer)."""

    def matrix(self) -> sp.csr_matrix:
        """All of A (only for a system small enough to hold: the exact omega)."""

    def pieces(
        self, parts: list[np.ndarray], label: np.ndarray, ids: list[int]
    ) -> Iterator[tuple[int, Piece]]:
        """The rows of blocks `ids` (parts[k]: block k's rows in sweep order; label: each row's
        block) as (block, piece), each block's pieces in its sweep order."""


# (global rows, their CSR row pointer from 0, their global columns, their values)
Piece = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _piece(rows: np.ndarray, sub: sp.csr_matrix) -> Piece:
    return rows, sub.indptr, sub.indices, sub.data


def entries_of(indptr: np.ndarray, rows: np.ndarray) -> int:
    """Entries in `rows` (as the source holds them), without an n-long temporary."""
    return int(indptr[rows + 1].sum(dtype=np.int64) - indptr[rows].sum(dtype=np.int64))


class MatrixRows:
    """A matrix in memory (a solve from Python arrays or a file read whole)."""

    def __init__(self, A: sp.csr_matrix, per: int = WINDOW_ENTRIES) -> None:
        self.A = A
        self.n = A.shape[0]
        self.indptr = A.indptr
        self.per = per

    def windows(
        self, start: int = 0, stop: int | None = None, values: bool = True
    ) -> Iterator[Window]:
        ip, A = self.indptr, self.A
        for r0, r1 in window_cuts(ip, start, self.n if stop is None else stop, self.per):
            lo, hi = int(ip[r0]), int(ip[r1])
            data = A.data[lo:hi] if values else None
            yield Window(r0, ip[r0 : r1 + 1] - lo, A.indices[lo:hi], data)

    def matrix(self) -> sp.csr_matrix:
        return self.A

    def pieces(
        self, parts: list[np.ndarray], label: np.ndarray, ids: list[int]
    ) -> Iterator[tuple[int, Piece]]:
        # block by block, in any sweep order (RCM blocks are not in row order)
        counts = np.diff(self.indptr)
        for k in ids:
            rows = parts[k]
            ends = np.cumsum(counts[rows])
            at = np.searchsorted(ends, np.arange(self.per, ends[-1] + 1, self.per)) + 1
            for chunk in np.split(rows, np.unique(at[at < rows.size])):
                yield k, _piece(chunk, self.A[chunk])


class FileRows:
    """The CSR arrays of an .npz the host has checked (sorctl.solver.npz_check), read in windows
    as they stream from the archive: only the row pointer is read whole."""

    def __init__(self, path: Path, per: int = WINDOW_ENTRIES) -> None:
        self.path = Path(path)
        self.per = per
        with NpzStream(self.path) as z:
            self.n = int(z.whole("shape", 16)[0])
            self.indptr = z.whole("indptr", self.n + 1)  # its own type: int32 takes half
            # no copy when the file holds float64 (read-only views of the bytes read)
            self.b = z.whole("b", self.n).astype(np.float64, copy=False)
            x0 = z.whole("x0", self.n) if "x0" in z.keys else None
            self.x0 = x0.astype(np.float64, copy=False) if x0 is not None else None

    @staticmethod
    def streams(path: Path) -> bool:
        """Whether the file's rows can be read in windows: CSR (not CSC), with headers numpy's
        public reader takes and values in their bytes' order."""
        try:
            with NpzStream(Path(path)) as z:
                if "A" in z.keys or not z.keys.issuperset((*io.CSR_KEYS, "b")):
                    return False
                fmt = z.whole("format", 16) if "format" in z.keys else None
                if io.csr_format(Path(path), fmt) != "csr":
                    return False
                heads = [z.header(k) for k in ("indices", "data", "indptr", "b")]
                return all(h is not None and sum(s > 1 for s in h.shape) <= 1 for h in heads)
        except (OSError, ValueError, InputError):
            return False

    def windows(
        self, start: int = 0, stop: int | None = None, values: bool = True
    ) -> Iterator[Window]:
        ip = self.indptr
        with NpzStream(self.path) as z:
            for r0, r1, idx, vals in row_windows(
                z, ip, self.per, start, stop, values, drop_every=DROP_CACHE_BYTES
            ):
                data = vals.astype(np.float64, copy=False) if vals is not None else None
                yield Window(r0, ip[r0 : r1 + 1] - ip[r0], idx, data)

    def matrix(self) -> sp.csr_matrix:
        return io.load_system(self.path, allow_nonsymmetric=True).A

    def pieces(
        self, parts: list[np.ndarray], label: np.ndarray, ids: list[int]
    ) -> Iterator[tuple[int, Piece]]:
        return pieces_in_row_order(self, parts, label, ids)


class GridRows:
    """A grid system (sorctl.solver.generated.Grid) no one holds: its row pointer is made from
    the stencil, its windows (for the plan) are made as they are asked for, and each node makes
    its own blocks' rows (the driver sends it the grid, not rows)."""

    def __init__(self, grid: Grid, per: int = WINDOW_ENTRIES) -> None:
        self.grid = grid
        self.n = grid.n
        self.indptr = grid.indptr()
        self.b = grid.b()
        self.per = per

    def windows(
        self, start: int = 0, stop: int | None = None, values: bool = True
    ) -> Iterator[Window]:
        for r0, r1 in window_cuts(self.indptr, start, self.n if stop is None else stop, self.per):
            indptr, indices, data = self.grid.rows(np.arange(r0, r1))
            yield Window(r0, indptr, indices, data if values else None)

    def matrix(self) -> sp.csr_matrix:
        return self.grid.matrix()

    def pieces(
        self, parts: list[np.ndarray], label: np.ndarray, ids: list[int]
    ) -> Iterator[tuple[int, Piece]]:
        return pieces_in_row_order(self, parts, label, ids)


def pieces_in_row_order(
    source: RowSource, parts: list[np.ndarray], label: np.ndarray, ids: list[int]
) -> Iterator[tuple[int, Piece]]:
    """RowSource.pieces from one pass over the source's windows: each block's rows of a window
    are its next piece, so every block's rows must be in row order."""
    if not ids:
        return
    for k in ids:
        if np.any(np.diff(parts[k]) <= 0):
            raise ValueError(f"block {k}'s rows are not in row order: the source is read in it")
    want = np.zeros(len(parts), dtype=bool)
    want[ids] = True
    lo = min(int(parts[k][0]) for k in ids)
    hi = max(int(parts[k][-1]) for k in ids) + 1
    for win in source.windows(lo, hi):
        lab = label[win.r0 : win.r1]
        local = np.flatnonzero(want[lab])
        if not local.size:
            continue
        W = win.matrix(source.n)
        by_block = local[np.argsort(lab[local], kind="stable")]
        ks = lab[by_block]
        edges = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1], True])
        for a, z in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            rows = by_block[a:z]
            yield int(ks[a]), _piece(rows + win.r0, W[rows])


def rows_of(A) -> RowSource:
    """A row source as it is, or a matrix (any scipy.sparse format or 2-D array) in memory."""
    if hasattr(A, "windows"):
        return A
    if not sp.issparse(A) or A.format != "csr":
        A = sp.csr_matrix(A)
    return MatrixRows(A)


def system_rows(path) -> tuple[RowSource, np.ndarray, np.ndarray | None, bool]:
    """(row source, b, x0, streamed) of a system file the host has checked: its rows read in
    windows as they go to their owners, or (a layout only a whole read takes: a dense A, CSC, a
    Fortran-ordered array; streamed False) the matrix read whole."""
    path = Path(path)
    if FileRows.streams(path):
        rows = FileRows(path)
        return rows, rows.b, rows.x0, True
    system = io.load_system(path, allow_nonsymmetric=True)
    return rows_of(system.A), system.b, system.x0, False
