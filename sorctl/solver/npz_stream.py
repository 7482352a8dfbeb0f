"""The arrays of an .npz read as streams, never whole: a member's .npy header (dtype, shape,
order) and then its values a window at a time, decompressed as they are read (zip stored or
deflated). Nothing is unpickled: an object dtype is refused from its header, with the message
np.load(allow_pickle=False) leads to in sorctl.solver.io.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from sorctl.solver.io import corrupt_archive_error, corrupt_array_error, pickled_error

ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


@dataclass(frozen=True)
class Header:
    key: str
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class Values:
    """One member's values, read in order: read(count) gives the next `count` of them
    (fewer at the end)."""

    def __init__(self, path: Path, header: Header, fh: IO[bytes]) -> None:
        self.path, self.header, self.fh = path, header, fh
        self.left = header.size

    def read(self, count: int) -> np.ndarray:
        itemsize = self.header.dtype.itemsize
        count = min(count, self.left)
        try:
            raw = self.fh.read(count * itemsize)
        except ARCHIVE_ERRORS as exc:
            raise corrupt_archive_error(self.path, exc) from None
        if len(raw) != count * itemsize:
            raise corrupt_archive_error(self.path, EOFError(f"'{self.header.key}' is truncated"))
        self.left -= count
        if self.left == 0:
            self._drain()  # the zip reader checks the member's CRC when it reaches its end
        return np.frombuffer(raw, dtype=self.header.dtype)

    def skip(self, count: int) -> None:
        """Pass over the next `count` values unread (a seek: a deflated member decompresses
        them on the way)."""
        count = min(count, self.left)
        if count:
            try:
                self.fh.seek(count * self.header.dtype.itemsize, 1)
            except ARCHIVE_ERRORS as exc:
                raise corrupt_archive_error(self.path, exc) from None
            self.left -= count

    def _drain(self) -> None:
        try:
            while self.fh.read(1 << 20):
                pass
        except ARCHIVE_ERRORS as exc:
            raise corrupt_archive_error(self.path, exc) from None


class NpzStream:
    """An .npz archive whose members are opened one header or one stream at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (*ARCHIVE_ERRORS, ValueError) as exc:
            raise corrupt_archive_error(path, exc) from None
        # np.load's names: "x.npy" is array "x"; a member without the suffix keeps its name
        self.members = {n[:-4] if n.endswith(".npy") else n: n for n in self.zip.namelist()}

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> NpzStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drop_cache(self) -> None:
        """Ask the kernel to drop the archive's pages from the page cache (best effort)."""
        fp = self.zip.fp
        if fp is not None and hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError, ValueError):
                os.posix_fadvise(fp.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    @property
    def keys(self) -> set[str]:
        return set(self.members)

    def header(self, key: str) -> Header | None:
        """The member's header; None for a .npy version whose header numpy reads only
        privately (3.0, a UTF-8 header): the caller reads such a file whole."""
        with self._member(key) as fh:
            return self._read_header(key, fh)

    @contextlib.contextmanager
    def values(self, key: str) -> Iterator[Values]:
        with self._member(key) as fh:
            header = self._read_header(key, fh)
            if header is None:  # the caller asked header() first
                raise corrupt_array_error(self.path, key, ValueError("unsupported .npy version"))
            yield Values(self.path, header, fh)

    def whole(self, key: str, most: int) -> np.ndarray:
        """A small member whole (at most `most` values; InputError beyond)."""
        with self.values(key) as v:
            if v.header.size > most:
                raise corrupt_array_error(
                    self.path, key, ValueError(f"{v.header.size} values, expected at most {most}")
                )
            flat = v.read(v.header.size)
            if v.header.fortran_order:
                return flat.reshape(v.header.shape, order="F")
            return flat.reshape(v.header.shape)

    @contextlib.contextmanager
    def _member(self, key: str) -> Iterator[IO[bytes]]:
        try:
            fh = self.zip.open(self.members[key])
        except ARCHIVE_ERRORS as exc:
            raise corrupt_archive_error(self.path, exc) from None
        with fh:
            yield fh

    def _read_header(self, key: str, fh: IO[bytes]) -> Header | None:
        fmt = np.lib.format
        try:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            else:
                return None
        except ARCHIVE_ERRORS as exc:
            raise corrupt_archive_error(self.path, exc) from None
        except ValueError as exc:
            raise corrupt_array_error(self.path, key, exc) from None
        if dtype.hasobject:
            raise pickled_error(self.path, key)
        return Header(key, dtype, tuple(int(s) for s in shape), bool(fortran))


def row_windows(
    z: NpzStream, indptr: np.ndarray, per: int, start: int = 0, stop: int | None = None,
    values: bool = True, drop_every: int = 0,
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:  # fmt: skip
    """(first row, end row, their column indices, their values or None) for rows start .. stop
    of a CSR archive, whole rows of about `per` entries at a time (one row if longer), as the
    members stream. `drop_every`: drop the archive's pages from the page cache each time that
    many bytes were read (a memory cgroup counts the pages its process reads)."""
    stop = indptr.size - 1 if stop is None else stop
    with contextlib.ExitStack() as stack:
        idx_s = stack.enter_context(z.values("indices"))
        val_s = stack.enter_context(z.values("data")) if values else None
        idx_s.skip(int(indptr[start]))
        if val_s is not None:
            val_s.skip(int(indptr[start]))
        read = 0
        for r0, r1 in window_cuts(indptr, start, stop, per):
            count = int(indptr[r1] - indptr[r0])
            idx = idx_s.read(count)
            vals = val_s.read(count) if val_s is not None else None
            read += idx.nbytes + (vals.nbytes if vals is not None else 0)
            if drop_every and read >= drop_every:
                z.drop_cache()
                read = 0
            yield r0, r1, idx, vals


def window_cuts(indptr: np.ndarray, start: int, stop: int, per: int) -> Iterator[tuple[int, int]]:
    """Rows start .. stop as (first, end) ranges of whole rows of about `per` entries each."""
    r0 = start
    while r0 < stop:
        r1 = int(np.searchsorted(indptr, int(indptr[r0]) + per, side="right")) - 1
        r1 = min(max(r1, r0 + 1), stop)
        yield r0, r1
        r0 = r1
