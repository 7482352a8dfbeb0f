"""System files in and solution files out.

Reads `.npz` (np.savez / savez_compressed: `b` plus dense `A`, or the CSR arrays that
scipy.sparse.save_npz writes) and Matrix Market `.mtx` with the right-hand side from a separate
`.npy`/`.mtx` file. Nothing is unpickled. Every problem becomes one InputError line that names
the file. Writes are atomic: a temp file in the target's directory, then os.replace.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.io
import scipy.sparse as sp

from sorctl.errors import InputError

# ||A - A^T||_max <= SYMMETRY_RTOL * ||A||_max counts as symmetric (rounding in the writer).
SYMMETRY_RTOL = 1e-10
CSR_KEYS = ("data", "indices", "indptr", "shape")


@dataclass
class System:
    A: Any  # scipy.sparse.csr_matrix (canonical, float64) or a 2-D float64 ndarray
    b: np.ndarray
    x0: np.ndarray | None
    source: str
    # the .npz read, when it holds this system as it is (a cluster solve sends the file itself
    # rather than a copy written again)
    file: str | None = None

    @property
    def n(self) -> int:
        return int(self.A.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.A.nnz) if sp.issparse(self.A) else int(np.count_nonzero(self.A))


def load_system(path, rhs=None, *, allow_nonsymmetric: bool = False) -> System:
    """Read and validate a system file; raises InputError (one line naming the file)."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "npz":
        A, b, x0 = _read_npz(path)
    else:
        A, b, x0 = _read_mtx(path), None, None
    if rhs is not None:
        b = read_vector(Path(rhs))
    elif b is None and kind == "npz":
        raise InputError(
            f"{path}: missing key 'b' (the right-hand side); add it or pass --rhs FILE"
        )
    elif b is None:
        raise InputError(f"{path}: a Matrix Market file holds no right-hand side; pass --rhs FILE")
    _validate(path, A, allow_nonsymmetric)
    n = A.shape[0]
    b = check_vector(Path(rhs) if rhs is not None else path, "b", b, n)
    if x0 is not None:
        x0 = check_vector(path, "x0", x0, n)
    as_is = str(path) if kind == "npz" and rhs is None else None
    return System(A=A, b=b, x0=x0, source=str(path), file=as_is)


def system_from_arrays(
    A, b, x0=None, *, allow_nonsymmetric: bool = False, source: str = "arrays"
) -> System:
    """The same checks as load_system, on arrays held in memory (A: scipy.sparse or 2-D array;
    copies, never changes the caller's arrays); InputError names `source` and the problem."""
    path = Path(source)
    if sp.issparse(A):
        A = sp.csr_matrix(A, dtype=np.float64, copy=True)
    else:
        A = np.asarray(A)
        if A.ndim != 2:
            raise InputError(f"{source}: A must be 2-D, got shape {A.shape}")
        A = np.array(plain_array(path, "A", A), dtype=np.float64)
    _validate(path, A, allow_nonsymmetric)
    n = A.shape[0]
    b = check_vector(path, "b", plain_array(path, "b", np.asarray(b)), n)
    if x0 is not None:
        x0 = check_vector(path, "x0", plain_array(path, "x0", np.asarray(x0)), n)
    return System(A=A, b=b, x0=x0, source=source)


def load_vector(path) -> np.ndarray:
    """A 1-D float64 vector from .npy/.mtx/.npz (key x or x0), e.g. a starting guess."""
    path = Path(path)
    if path.suffix == ".npz":
        with _open_npz(path) as f:
            key = "x" if "x" in f.files else "x0" if "x0" in f.files else None
            if key is None:
                raise InputError(f"{path}: no 'x' or 'x0' array in this .npz")
            return plain_array(path, key, _get(path, f, key)).ravel()
    return read_vector(path)


# ---- reading -----------------------------------------------------------------------------


def file_kind(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a system file")
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not head:
        raise InputError(f"{path}: empty file")
    if head.startswith(b"PK"):
        return "npz"
    if head.lstrip().lower().startswith(b"%%matrixmarket"):
        return "mtx"
    if path.suffix in (".npz", ".mtx"):
        what = "zip archive" if path.suffix == ".npz" else "Matrix Market header"
        raise InputError(f"{path}: not a valid {path.suffix} file (no {what} at the start)")
    raise InputError(f"{path}: not a system file: expected .npz (numpy) or .mtx (Matrix Market)")


@contextlib.contextmanager
def _open_npz(path: Path) -> Iterator[Any]:
    try:
        f = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise corrupt_archive_error(path, exc) from None
    if not hasattr(f, "files"):  # a bare .npy renamed .npz
        raise InputError(f"{path}: a single .npy array, not an .npz archive")
    with f:
        yield f


def _get(path: Path, f, key: str) -> np.ndarray:
    try:
        return f[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise pickled_error(path, key) from None
        raise corrupt_array_error(path, key, exc) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise corrupt_archive_error(path, exc) from None


def pickled_error(path: Path, key: str) -> InputError:
    return InputError(
        f"{path}: array '{key}' holds Python objects (pickled); only numeric arrays are read"
    )


def corrupt_archive_error(path: Path, exc: BaseException) -> InputError:
    return InputError(f"{path}: truncated or corrupt .npz archive ({_short(exc)})")


def corrupt_array_error(path: Path, key: str, exc: BaseException) -> InputError:
    return InputError(f"{path}: array '{key}' is corrupt ({_short(exc)})")


def _read_npz(path: Path):
    with _open_npz(path) as f:
        keys = set(f.files)
        if not keys:
            raise InputError(f"{path}: empty .npz archive (no arrays)")
        if "A" in keys:
            A = plain_array(path, "A", _get(path, f, "A"))
            if A.ndim != 2:
                raise InputError(f"{path}: 'A' must be 2-D, got {A.ndim}-D with shape {A.shape}")
        elif keys.issuperset(CSR_KEYS):
            A = _read_csr(path, {k: _get(path, f, k) for k in (*CSR_KEYS, "format") if k in keys})
        else:
            missing = sorted(set(CSR_KEYS) - keys)
            raise InputError(
                f"{path}: missing keys: need 'A' (dense) or the CSR arrays "
                f"{', '.join(map(repr, CSR_KEYS))} (missing {', '.join(missing)})"
            )
        b = plain_array(path, "b", _get(path, f, "b")) if "b" in keys else None
        x0 = plain_array(path, "x0", _get(path, f, "x0")) if "x0" in keys else None
    return A, b, x0


def _read_csr(path: Path, arrs: dict[str, np.ndarray]) -> sp.csr_matrix:
    fmt = csr_format(path, arrs.get("format"))
    nrows, ncols = csr_shape(path, arrs["shape"])
    data = plain_array(path, "data", arrs["data"]).ravel()
    indices, indptr = arrs["indices"], arrs["indptr"]
    for key, arr in (("indices", indices), ("indptr", indptr)):
        check_index_array(path, key, arr.dtype, arr.shape)
    check_indptr(path, fmt, nrows, ncols, indptr, len(indices))
    check_csr_lengths(path, len(data), len(indices))
    minor = ncols if fmt == "csr" else nrows
    if len(indices) and (indices.min() < 0 or indices.max() >= minor):
        raise indices_range_error(path, minor, int(indices.min()), int(indices.max()))
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    A = cls(
        (data, indices.astype(np.int64, copy=False), indptr.astype(np.int64, copy=False)),
        shape=(nrows, ncols),
    )
    return A.tocsr()


# The CSR checks one by one, shared with the windowed reader (sorctl.solver.npz_check)


def csr_format(path: Path, f: np.ndarray | None) -> str:
    if f is None:
        return "csr"
    fmt = f.item() if f.size == 1 and f.dtype.kind in "SU" else repr(f.tolist())
    fmt = fmt.decode(errors="replace") if isinstance(fmt, bytes) else fmt
    if fmt not in ("csr", "csc"):
        raise InputError(f"{path}: sparse format {fmt!r} is not supported (only csr or csc)")
    return fmt


def csr_shape(path: Path, shape: np.ndarray) -> tuple[int, int]:
    if shape.dtype.kind not in "iu" or shape.shape != (2,):
        raise InputError(f"{path}: 'shape' must be two integers, got {shape!r}")
    nrows, ncols = (int(s) for s in shape)
    if nrows < 0 or ncols < 0:
        raise InputError(f"{path}: negative shape {nrows} x {ncols}")
    return nrows, ncols


def check_index_array(path: Path, key: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    if dtype.kind not in "iu" or len(shape) != 1:
        raise InputError(
            f"{path}: '{key}' must be a 1-D integer array, got {dtype} with shape {shape}"
        )


def check_indptr(
    path: Path, fmt: str, nrows: int, ncols: int, indptr: np.ndarray, nnz: int
) -> None:
    check_indptr_length(path, fmt, nrows, ncols, indptr.shape[0])
    check_indptr_values(path, indptr, nnz)


def check_indptr_length(path: Path, fmt: str, nrows: int, ncols: int, length: int) -> None:
    major = nrows if fmt == "csr" else ncols
    if length != major + 1:
        raise InputError(
            f"{path}: inconsistent indptr: length {length}, "
            f"expected {major + 1} for shape {nrows} x {ncols}"
        )


def check_indptr_values(path: Path, indptr: np.ndarray, nnz: int) -> None:
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != nnz:
        raise InputError(
            f"{path}: inconsistent indptr: must start at 0, never decrease and end "
            f"at len(indices) = {nnz}"
        )


def check_csr_lengths(path: Path, ndata: int, nindices: int) -> None:
    if ndata != nindices:
        raise InputError(f"{path}: 'data' has {ndata} entries but 'indices' {nindices}")


def indices_range_error(path: Path, minor: int, lo: int, hi: int) -> InputError:
    return InputError(
        f"{path}: CSR indices out of range: must lie in [0, {minor}), found {lo}..{hi}"
    )


def _read_mtx(path: Path):
    try:
        M = scipy.io.mmread(path)
    except MemoryError:
        raise
    except Exception as exc:  # scipy raises ValueError/OSError/RuntimeError for bad files
        raise InputError(f"{path}: not a valid Matrix Market file ({_short(exc)})") from None
    if sp.issparse(M):
        M = M.tocsr()
        return M.astype(numeric_dtype(path, "A", M.dtype), copy=False)
    return plain_array(path, "A", np.asarray(M))


def read_vector(path: Path) -> np.ndarray:
    kind = path.suffix
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if kind == ".npy":
        try:
            v = np.load(path, allow_pickle=False)
        except ValueError as exc:
            if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                raise InputError(
                    f"{path}: holds Python objects (pickled); only numeric arrays are read"
                ) from None
            raise InputError(f"{path}: not a valid .npy file ({_short(exc)})") from None
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: cannot read .npy file ({_short(exc)})") from None
        if not isinstance(v, np.ndarray):
            raise InputError(f"{path}: expected one .npy array, found an .npz archive")
    elif kind == ".mtx":
        v = _read_mtx(path)
        v = v.toarray() if sp.issparse(v) else v
    else:
        raise InputError(f"{path}: right-hand side must be a .npy or .mtx file")
    v = plain_array(path, "b", np.asarray(v))
    if v.ndim == 2 and 1 in v.shape:
        v = v.ravel()
    return v


# ---- validation ----------------------------------------------------------------------------


def numeric_dtype(path: Path, key: str, dtype: np.dtype) -> type:
    if dtype.kind == "c":
        raise InputError(f"{path}: '{key}' has complex values; only real systems are supported")
    if dtype.kind not in "fiub":
        raise InputError(f"{path}: '{key}' is not numeric (dtype {dtype})")
    return np.float64


def plain_array(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    return arr.astype(numeric_dtype(path, key, arr.dtype), copy=False)


def _validate(path: Path, A, allow_nonsymmetric: bool) -> None:
    n, m = A.shape
    check_square(path, n, m)
    if sp.issparse(A):
        A.sum_duplicates()  # canonical: sorted indices, no duplicates
        A.sort_indices()
        values = A.data
    else:
        values = A
    if not np.all(np.isfinite(values)):
        raise not_finite_error(path)
    check_diagonal(path, A.diagonal())
    if not allow_nonsymmetric:
        scale = float(np.abs(values).max())
        asym = abs(A - A.T).max() if sp.issparse(A) else np.abs(A - A.T).max()
        if asym > SYMMETRY_RTOL * scale:
            raise not_symmetric_error(path, asym, scale)


def check_square(path: Path, n: int, m: int) -> None:
    if n == 0 or m == 0:
        raise InputError(f"{path}: empty system (A is {n} x {m})")
    if n != m:
        raise InputError(f"{path}: A is not square ({n} x {m})")


def not_finite_error(path: Path) -> InputError:
    return InputError(f"{path}: A contains NaN or Inf")


def check_diagonal(path: Path, d: np.ndarray) -> None:
    bad = np.flatnonzero(d <= 0)
    if bad.size:
        raise diagonal_error(path, int(bad[0]), float(d[bad[0]]), bad.size, len(d))


def diagonal_error(path: Path, i: int, value: float, bad: int, n: int) -> InputError:
    return InputError(
        f"{path}: diagonal entry A[{i},{i}] = {value:g} is not positive "
        f"({bad} of {n} rows); SOR needs a positive diagonal"
    )


def not_symmetric_error(path: Path, asym: float, scale: float) -> InputError:
    return InputError(
        f"{path}: A is not symmetric (max |A - A^T| = {asym:.3g}, "
        f"max |A| = {scale:.3g}); pass --allow-nonsymmetric to solve anyway"
    )


def check_vector(path: Path, key: str, v: np.ndarray, n: int) -> np.ndarray:
    if v.ndim != 1:
        raise InputError(f"{path}: '{key}' must be 1-D, got shape {v.shape}")
    if v.shape[0] != n:
        raise InputError(f"{path}: '{key}' has length {v.shape[0]}, A is {n} x {n}")
    if not np.all(np.isfinite(v)):
        raise InputError(f"{path}: '{key}' contains NaN or Inf")
    return np.ascontiguousarray(v, dtype=np.float64)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


# ---- writing -------------------------------------------------------------------------------


def atomic_write(path, write) -> None:
    """Call write(fh) on a temp file next to path, then rename it over path; on any failure
    (Ctrl-C included) the temp file is removed and path is untouched."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_system(path, A, b: np.ndarray, x0: np.ndarray | None = None) -> None:
    """Write A (CSR or dense) and b as an .npz that load_system reads (CSR keys as save_npz)."""
    arrays: dict[str, Any] = {"b": np.asarray(b, dtype=np.float64)}
    if sp.issparse(A):
        A = sp.csr_matrix(A)
        arrays.update(
            data=A.data,
            indices=A.indices,
            indptr=A.indptr,
            shape=np.array(A.shape, dtype=np.int64),
            format=np.array("csr"),
        )
    else:
        arrays["A"] = np.asarray(A, dtype=np.float64)
    if x0 is not None:
        arrays["x0"] = np.asarray(x0, dtype=np.float64)

    def write(fh: IO[bytes]) -> None:
        np.savez(fh, **arrays)

    atomic_write(path, write)


def save_solution(path, x: np.ndarray, residuals, report: dict) -> None:
    """Write x, the residual history and the JSON report (a string array, no pickle) atomically."""

    def write(fh: IO[bytes]) -> None:
        np.savez(
            fh,
            x=np.asarray(x, dtype=np.float64),
            residuals=np.asarray(residuals, dtype=np.float64),
            report=np.array(json.dumps(report)),
        )

    atomic_write(path, write)
