"""Grid systems made row by row: any rows of a stencil matrix from the stencil alone.

`sorctl gen` writes these systems whole (sorctl.solver.gallery builds them here); a cluster
solve of `--gen KIND:SIZE` has each node make only its own rows (sorctl.distributed.rows), so
the system never exists in one place and no byte of A crosses a link.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from sorctl.errors import InputError

# the kinds a node can make its rows of: the rest (random, dense) need the whole matrix
GRID_KINDS = ("poisson2d", "poisson3d", "anisotropic2d")
ALL_KINDS = (*GRID_KINDS, "random-spd", "dense-spd")
ANISOTROPIC_EPS = 0.01
ANISOTROPIC_THETA = math.pi / 4
ROWS_PER_CHUNK = 1 << 16  # rows made at once: a few MB of temporaries for 3-D


def _poisson_stencil(dim: int) -> np.ndarray:
    s = np.zeros((3,) * dim)
    centre = (1,) * dim
    s[centre] = 2.0 * dim
    for axis, side in itertools.product(range(dim), (0, 2)):
        at = list(centre)
        at[axis] = side
        s[tuple(at)] = -1.0
    return s


def anisotropic_stencil(eps: float, theta: float) -> np.ndarray:
    """Rotated anisotropic diffusion (bilinear finite elements, the stencil PyAMG's
    diffusion_stencil_2d builds): strong direction theta, weak coefficient eps."""
    c, s_ = np.cos(theta), np.sin(theta)
    cc, ss, cs = c * c, s_ * s_, c * s_
    a = (-eps - 1) * cc + (-eps - 1) * ss + (3 * eps - 3) * cs
    b = (2 * eps - 4) * cc + (-4 * eps + 2) * ss
    cc_ = (-eps - 1) * cc + (-eps - 1) * ss + (-3 * eps + 3) * cs
    d = (-4 * eps + 2) * cc + (2 * eps - 4) * ss
    e = (8 * eps + 8) * cc + (8 * eps + 8) * ss
    return np.array([[a, b, cc_], [d, e, d], [cc_, b, a]]) / 6.0


@dataclass(frozen=True)
class Grid:
    """A stencil system on an m^dim interior grid with Dirichlet edges, b = 1, rows in the
    grid's lexicographic order."""

    kind: str
    m: int
    eps: float = ANISOTROPIC_EPS
    theta: float = ANISOTROPIC_THETA

    def __post_init__(self) -> None:
        if self.kind not in GRID_KINDS:
            raise InputError(f"{self.kind!r} is not a grid kind ({', '.join(GRID_KINDS)})")
        if self.m < 1:
            raise InputError(f"{self.kind}: the grid size must be at least 1, got {self.m}")

    @property
    def dim(self) -> int:
        return 3 if self.kind == "poisson3d" else 2

    @property
    def n(self) -> int:
        return self.m**self.dim

    @property
    def source(self) -> str:
        return f"{self.kind}:{self.m}"

    def stencil(self) -> np.ndarray:
        if self.kind == "anisotropic2d":
            return anisotropic_stencil(self.eps, self.theta)
        return _poisson_stencil(self.dim)

    def _offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(the nonzero offsets, dim columns of -1/0/1, in ascending order of the column they
        reach; their values)."""
        s = self.stencil()
        offs = [o for o in np.ndindex(s.shape) if s[o] != 0]
        return np.array(offs, dtype=np.int64).reshape(-1, self.dim) - 1, np.array(
            [s[o] for o in offs]
        )

    @property
    def nnz(self) -> int:
        """Entries: each offset reaches m - |shift| points along each axis."""
        shifts, _ = self._offsets()
        return int(sum(math.prod(self.m - abs(int(d)) for d in sh) for sh in shifts))

    def rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(CSR row pointer from 0, global columns ascending in each row, values) of `rows`,
        in the order given."""
        shifts, values = self._offsets()
        rows = np.asarray(rows, dtype=np.int64)
        strides = self.m ** np.arange(self.dim - 1, -1, -1, dtype=np.int64)
        coords = (rows[:, None] // strides) % self.m  # rows x dim
        keep = np.ones((rows.size, len(shifts)), dtype=bool)
        for axis in range(self.dim):
            nb = coords[:, axis, None] + shifts[None, :, axis]
            keep &= (nb >= 0) & (nb < self.m)
        cols = rows[:, None] + (shifts @ strides)[None, :]
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        itype = np.int32 if self.n < 2**31 else np.int64
        data = np.broadcast_to(values, keep.shape)[keep]
        return indptr, cols[keep].astype(itype), np.ascontiguousarray(data, dtype=np.float64)

    def row_counts(self) -> np.ndarray:
        """Entries of every row (int8: at most 27), without the rows themselves."""
        shifts, _ = self._offsets()
        counts = np.zeros(self.n, dtype=np.int8)
        axes = np.arange(self.m)
        for sh in shifts:
            ok = np.ones((1,) * self.dim, dtype=bool)
            for axis, d in enumerate(sh):
                along = ((axes + d >= 0) & (axes + d < self.m)).reshape(
                    [-1 if a == axis else 1 for a in range(self.dim)]
                )
                ok = ok & along
            counts += np.broadcast_to(ok, (self.m,) * self.dim).reshape(-1)
        return counts

    def indptr(self) -> np.ndarray:
        itype = np.int32 if self.nnz < 2**31 else np.int64
        ptr = np.zeros(self.n + 1, dtype=itype)
        np.cumsum(self.row_counts(), out=ptr[1:], dtype=itype)
        return ptr

    def chunks(self, rows: np.ndarray):
        """(rows, row pointer, columns, values) of `rows`, ROWS_PER_CHUNK rows at a time."""
        for at in range(0, rows.size, ROWS_PER_CHUNK):
            some = rows[at : at + ROWS_PER_CHUNK]
            yield (some, *self.rows(some))

    def b(self) -> np.ndarray:
        return np.ones(self.n)

    def matrix(self) -> sp.csr_matrix:
        """All of A (canonical CSR), made a chunk at a time."""
        parts = list(self.chunks(np.arange(self.n)))
        indptr = self.indptr()
        indices = np.concatenate([p[2] for p in parts]).astype(indptr.dtype, copy=False)
        A = sp.csr_matrix(
            (np.concatenate([p[3] for p in parts]), indices, indptr), shape=(self.n, self.n)
        )
        A.has_sorted_indices = True
        A.has_canonical_format = True
        return A

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        return cls(**data)


def parse_gen(text: str) -> tuple[str, int]:
    """KIND:SIZE as `sorctl solve --gen` takes it (SIZE as `sorctl gen --size`)."""
    kind, sep, size = text.partition(":")
    if not sep or kind not in ALL_KINDS:
        raise InputError(f"--gen {text}: give KIND:SIZE, KIND one of {', '.join(ALL_KINDS)}")
    try:
        m = int(size)
    except ValueError:
        m = 0
    if m < 1:
        raise InputError(f"--gen {text}: SIZE must be a positive whole number")
    return kind, m
