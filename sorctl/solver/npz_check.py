"""Check an .npz of CSR (or CSC) arrays without holding its matrix: the row pointer whole, then
`indices` and `data` a window of rows at a time, with the same one-line errors as
sorctl.solver.io.load_system. Memory: a few n-vectors plus one window (WINDOW_BYTES of the
file's values, or one row if a row is longer).

A CSC file is the CSR file of A^T, and every check is the same for A and A^T (square, indices in
range, finite, positive diagonal, symmetric), so its columns are read as rows.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sorctl.errors import InputError
from sorctl.solver import io
from sorctl.solver.npz_stream import Header, NpzStream, row_windows

# of indices + data per window; the check of a 3-D Poisson 120^3 file (CSR 144 MB) peaks at
# 142 MB RSS in 0.7 s with 8 MB windows, 257 MB in 1.1 s with 32 MB (load_system: 368 MB, 1.25 s)
WINDOW_BYTES = 8 << 20

# at least this many entries (of the rows and columns the symmetry probe suspects) are then
# compared exactly, so that the refusal names the asymmetry itself, and rounding is told apart
EXACT_ENTRIES = 1 << 16


@dataclass(frozen=True)
class SystemFile:
    """A system .npz that passed the checks, to be solved from the file as it is: all the host
    keeps of it (a cluster solve sends `file`)."""

    source: str
    file: str
    n: int
    nnz: int  # after duplicates are summed, as System.nnz
    b: np.ndarray | None = None  # replaces the file's b (--rhs); None: the file's own
    x0: np.ndarray | None = None  # replaces the file's x0 (--x0); None: the file's own, if any

    @property
    def as_is(self) -> bool:
        """Whether the file holds the system as it is (else: a copy with b or x0 replaced)."""
        return self.b is None and self.x0 is None


def copy_with(src, dest, *, b: np.ndarray | None = None, x0: np.ndarray | None = None) -> None:
    """Write dest: the .npz src with b and/or x0 replaced, member by member (the rest copied as
    it is read, decompressed and stored: quick, and never in memory whole)."""
    replaced = {k: v for k, v in (("b", b), ("x0", x0)) if v is not None}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            if (name[:-4] if name.endswith(".npy") else name) in replaced:
                continue
            with zin.open(name) as r, zout.open(name, "w", force_zip64=True) as w:
                shutil.copyfileobj(r, w, 1 << 20)
        for key, value in replaced.items():
            with zout.open(f"{key}.npy", "w", force_zip64=True) as w:
                np.lib.format.write_array(w, np.ascontiguousarray(value, dtype=np.float64))


def check_npz(
    path, rhs=None, *, allow_nonsymmetric: bool = False, window_bytes: int = WINDOW_BYTES
) -> SystemFile | None:
    """The checks of load_system(path, rhs) on an .npz of CSR arrays, read in windows;
    InputError as load_system raises it. None when the file is something else (dense A, no CSR
    keys, a layout only a whole read handles): load_system then reads it, and says what is
    wrong. `rhs`: a .npy/.mtx right-hand side instead of the file's b."""
    path = Path(path)
    if io.file_kind(path) != "npz":
        return None
    with NpzStream(path) as z:
        keys = z.keys
        if "A" in keys or not keys.issuperset(io.CSR_KEYS):
            return None
        headers = {}
        for key in (*io.CSR_KEYS, "format"):  # np.load's order: data first
            if key in keys:
                headers[key] = z.header(key)
        if any(h is None for h in headers.values()):
            return None
        check = _Check(path, z, headers, allow_nonsymmetric, window_bytes)  # type: ignore[arg-type]
        return check.run(Path(rhs) if rhs is not None else None)


class _Check:
    def __init__(
        self, path: Path, z: NpzStream, headers: dict[str, Header], allow_nonsymmetric: bool,
        window_bytes: int,
    ) -> None:  # fmt: skip
        self.path, self.z, self.h = path, z, headers
        self.allow_nonsymmetric = allow_nonsymmetric
        self.window_bytes = window_bytes

    def run(self, rhs: Path | None) -> SystemFile | None:
        path, z, h = self.path, self.z, self.h
        fmt = io.csr_format(path, z.whole("format", 1 << 16) if "format" in h else None)
        nrows, ncols = io.csr_shape(path, z.whole("shape", 1 << 16))
        data = h["data"]
        io.numeric_dtype(path, "data", data.dtype)
        if data.fortran_order and sum(s > 1 for s in data.shape) > 1:
            return None  # ravel() of a Fortran-ordered 2-D array is not its bytes' order
        for key in ("indices", "indptr"):
            io.check_index_array(path, key, h[key].dtype, h[key].shape)
        io.check_indptr_length(path, fmt, nrows, ncols, h["indptr"].shape[0])
        indptr = z.whole("indptr", h["indptr"].size).astype(np.int64, copy=False)
        nnz = h["indices"].size
        io.check_indptr_values(path, indptr, nnz)
        io.check_csr_lengths(path, data.size, nnz)
        self.indptr, self.square = indptr, nrows == ncols and nrows > 0
        self.minor = ncols if fmt == "csr" else nrows
        stats = self._pass()
        lo, hi = stats.lo, stats.hi
        if lo is not None and hi is not None and (lo < 0 or hi >= self.minor):
            raise io.indices_range_error(path, self.minor, lo, hi)
        vectors = {}
        for key in ("b", "x0"):  # as load_system: their dtypes before the checks of A
            if key in z.keys:
                header = z.header(key)
                if header is None:
                    return None
                io.numeric_dtype(path, key, header.dtype)
                vectors[key] = header
        b = io.read_vector(rhs) if rhs is not None else None
        if b is None and "b" not in vectors:
            raise InputError(
                f"{path}: missing key 'b' (the right-hand side); add it or pass --rhs FILE"
            )
        io.check_square(path, nrows, ncols)
        if not stats.finite:
            raise io.not_finite_error(path)
        if stats.bad_diagonal:
            i, value = stats.first_bad_diagonal
            raise io.diagonal_error(path, i, value, stats.bad_diagonal, nrows)
        if not self.allow_nonsymmetric and stats.suspect_rows.size:
            # exact on the suspects: what the probe proves, or what it cannot tell from rounding
            asym = self._asymmetry(stats.suspect_rows)
            if asym > io.SYMMETRY_RTOL * stats.scale or stats.proven:
                raise io.not_symmetric_error(path, asym, stats.scale)
        del stats
        if rhs is not None and b is not None:
            b = io.check_vector(rhs, "b", b, nrows)
            vectors.pop("b", None)
        for header in vectors.values():
            self._check_vector(header)
        return SystemFile(source=str(path), file=str(path), n=nrows, nnz=self.nnz, b=b)

    def _check_vector(self, header: Header) -> None:
        n = len(self.indptr) - 1
        if len(header.shape) != 1:
            raise InputError(f"{self.path}: '{header.key}' must be 1-D, got shape {header.shape}")
        if header.shape[0] != n:
            raise InputError(
                f"{self.path}: '{header.key}' has length {header.shape[0]}, A is {n} x {n}"
            )
        io.check_vector(self.path, header.key, self.z.whole(header.key, n).astype(np.float64), n)

    def _per_window(self) -> int:
        """Entries of indices and data per window."""
        itemsize = self.h["indices"].dtype.itemsize + self.h["data"].dtype.itemsize
        return max(1, self.window_bytes // itemsize)

    def _windows(self) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """(first row, end row, their column indices, their values): whole rows at a time."""
        for r0, r1, idx, vals in row_windows(self.z, self.indptr, self._per_window()):
            # a copy either way: frombuffer's array is read-only, sum_duplicates writes
            yield r0, r1, idx.astype(np.int64), np.asarray(vals).astype(np.float64)

    def _pass(self) -> _Stats:
        n = len(self.indptr) - 1
        stats = _Stats(n, self.square and not self.allow_nonsymmetric)
        ok = True  # indices in range so far: the values can be looked at
        self.nnz = 0
        for r0, r1, idx, vals in self._windows():
            if idx.size:
                lo, hi = int(idx.min()), int(idx.max())
                stats.lo = lo if stats.lo is None else min(stats.lo, lo)
                stats.hi = hi if stats.hi is None else max(stats.hi, hi)
                ok = ok and lo >= 0 and hi < self.minor
            if ok and self.square:
                W = sp.csr_matrix(
                    (vals, idx, self.indptr[r0 : r1 + 1] - self.indptr[r0]), shape=(r1 - r0, n)
                )
                W.sum_duplicates()  # canonical, as load_system makes A
                self.nnz += W.nnz
                stats.add(r0, W)
        stats.finish(budget=max(self._per_window(), EXACT_ENTRIES))
        return stats

    def _asymmetry(self, rows: np.ndarray) -> float:
        """max |a_ij - a_ji| over the given rows i, exactly: a second pass keeps the entries of
        those rows and of those columns (all a_ij and a_ji for i in rows)."""
        n = len(self.indptr) - 1
        keep = np.zeros(n, dtype=bool)
        keep[rows] = True
        parts_r, parts_c, parts_v = [], [], []
        for r0, r1, idx, vals in self._windows():
            row = np.repeat(np.arange(r0, r1), np.diff(self.indptr[r0 : r1 + 1]))
            mask = keep[row] | keep[idx]
            parts_r.append(row[mask])
            parts_c.append(idx[mask])
            parts_v.append(vals[mask])
        B = sp.csr_matrix(
            (np.concatenate(parts_v), (np.concatenate(parts_r), np.concatenate(parts_c))),
            shape=(n, n),
        )  # duplicates summed, as load_system sums them
        return float(abs(B - B.T)[rows].max())


class _Stats:
    """What one pass over the windows learns: index range, finiteness, the diagonal, max |A|, and
    the symmetry probe.

    Symmetry without the whole matrix: load_system accepts A when max |a_ij - a_ji| <= tol,
    tol = SYMMETRY_RTOL * max |A|. The pass streams d = A r - A^T r for a random r with
    1 <= |r_j| < 2 (A^T r scatters into an n-vector). d_i = sum_j (a_ij - a_ji) r_j over the
    k_i = (entries of row i) + (entries of column i) positions, so
    - one pair beyond tol makes |d_i| > tol (|r_j| >= 1), up to rounding: rows with
      |d_i| > tol / 2 are suspects; nothing below that is, unless a row's asymmetries cancel
      against the random r (probability ~0 for a real asymmetry);
    - if A is within tol, |d_i| <= 2 k_i tol plus the rounding of the two sums (each term at
      most 2 max|A|, at most K + 2 terms, K the longest row or column): a row beyond that bound
      proves an asymmetry beyond tol.
    The check then compares a_ij with a_ji exactly on the suspect rows (proven ones first, then
    by |d_i|, as many as EXACT_ENTRIES allows, in a second pass): it refuses when one is beyond
    tol, as load_system would, and names that max |A - A^T|. So it never refuses what
    load_system accepts, and it accepts what load_system refuses only on a cancellation as above
    or beyond the suspects it has room for (rows whose |d_i| is smaller than all it compared).
    """

    def __init__(self, n: int, probe: bool) -> None:
        self.lo: int | None = None
        self.hi: int | None = None
        self.finite = True
        self.scale = 0.0
        self.bad_diagonal = 0  # rows whose diagonal entry is not positive, the first of them
        self.first_bad_diagonal = (0, 0.0)
        self.probe = probe
        self.suspect_rows = np.zeros(0, dtype=np.int64)
        self.proven = False  # some row proven asymmetric beyond the tolerance
        if probe:
            rng = np.random.default_rng()
            self.r = rng.choice([-1.0, 1.0], n) * (1.0 + rng.random(n))
            self.d = np.zeros(n)  # A r - A^T r
            # k_i: entries of row i plus of column i (at most 2 n)
            self.counts: np.ndarray = np.zeros(n, dtype=np.int32 if 2 * n < 2**31 else np.int64)

    def add(self, r0: int, W: sp.csr_matrix) -> None:
        if not np.all(np.isfinite(W.data)):
            self.finite = False
        if not self.finite:
            return
        if W.nnz:
            self.scale = max(self.scale, float(np.abs(W.data).max()))
        r1 = r0 + W.shape[0]
        diagonal = W.diagonal(k=r0)
        bad = np.flatnonzero(diagonal <= 0)
        if bad.size and not self.bad_diagonal:
            self.first_bad_diagonal = (r0 + int(bad[0]), float(diagonal[bad[0]]))
        self.bad_diagonal += bad.size
        if self.probe and W.nnz:
            per_row = np.diff(W.indptr)
            self.d[r0:r1] += W @ self.r
            self.counts[r0:r1] += per_row
            # A^T r and the column counts, scattered over the columns this window touches only
            c0 = int(W.indices.min())
            cols, width = W.indices - c0, int(W.indices.max()) - c0 + 1
            weights = W.data * np.repeat(self.r[r0:r1], per_row)
            self.d[c0 : c0 + width] -= np.bincount(cols, weights=weights, minlength=width)
            self.counts[c0 : c0 + width] += np.bincount(cols, minlength=width)

    def finish(self, budget: int) -> None:
        """Pick the rows to look at exactly (`suspect_rows`, at most `budget` entries in their
        rows and columns): first those the bound proves asymmetric, then those with
        |d_i| > SYMMETRY_RTOL max|A| / 2 (one pair beyond the tolerance gives at least that,
        |r_j| >= 1), largest first."""
        if not (self.probe and self.finite):
            return
        del self.r
        longest = int(self.counts.max(initial=0))
        eps = np.finfo(np.float64).eps
        tol = io.SYMMETRY_RTOL * self.scale
        bound = self.counts * ((tol + 2 * (longest + 2) * eps * self.scale) * 2)
        dev = np.abs(self.d, out=self.d)
        rows = np.flatnonzero(dev > tol / 2)
        proven = dev[rows] > bound[rows]
        del bound
        rows = rows[np.lexsort((-dev[rows], ~proven))]  # proven first, then by |d_i|
        entries = np.cumsum(self.counts[rows])
        self.suspect_rows = rows[: max(1, int(np.searchsorted(entries, budget, side="right")))]
        self.proven = bool(proven.any())
        del self.d, self.counts


def is_csr_npz(path) -> bool:
    """Whether `path` looks like an .npz of CSR arrays (its zip directory only; no values read).
    False for anything else, including files load_system will refuse."""
    try:
        with NpzStream(Path(path)) as z:
            return "A" not in z.keys and z.keys.issuperset(io.CSR_KEYS)
    except (InputError, OSError):
        return False
