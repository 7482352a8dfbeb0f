"""Split the rows of A into blocks, colour the blocks, and place them on node CPUs; for cg-ssor,
find strips that sweep as a pipeline in A's own order where A has them (grids). The pattern is
read a window at a time from a row source (sorctl.distributed.rows), never needed whole.

Blocks are contiguous ranges of a reverse Cuthill-McKee ordering when A is held whole: RCM keeps
every row's neighbours within a narrow band, so a contiguous range of it couples only to the
ranges just before and after it, and the block graph of a mesh is close to a path (two colours).
A file streamed to its owners is cut in its own row order (RCM needs the whole pattern), which
for a grid in natural order is such a band too. Blocks of one colour share no nonzero, so they
can be swept at the same time and still give SOR in the permuted order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from sorctl.distributed.rows import rows_of


def contiguous_blocks(A: sp.csr_matrix, nblocks: int) -> list[np.ndarray]:
    """`nblocks` row sets (global numbers, sweep order) of about equal work, cut from RCM order."""
    order = reverse_cuthill_mckee(A, symmetric_mode=True).astype(np.int64)
    return _cut(order, np.diff(A.indptr), nblocks)


def natural_blocks(indptr: np.ndarray, nblocks: int) -> list[np.ndarray]:
    """`nblocks` ranges of A's own row order of about equal work (a file streamed to its owners:
    no reordering, which would need the whole pattern)."""
    n = indptr.size - 1
    order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    return _cut(order, np.diff(indptr), nblocks)


def _cut(order: np.ndarray, per_row: np.ndarray, nblocks: int) -> list[np.ndarray]:
    n = order.size
    nblocks = max(1, min(int(nblocks), n))
    # Balance work (nonzeros, plus one per row for the update itself), not row counts.
    work = per_row[order].astype(np.int64) + 1
    cum = np.cumsum(work)
    targets = cum[-1] * np.arange(1, nblocks) / nblocks
    cuts = np.searchsorted(cum, targets, side="left") + 1
    cuts = np.unique(np.clip(cuts, 1, n - 1)) if n > 1 else np.array([], dtype=np.int64)
    return [part for part in np.split(order, cuts) if part.size]


def block_labels(n: int, blocks: Sequence[np.ndarray]) -> np.ndarray:
    """label[i] = index of the block holding row i; every row must be in exactly one block."""
    label: np.ndarray = np.full(n, -1, dtype=np.int16 if len(blocks) < 2**15 else np.int32)
    for k, rows in enumerate(blocks):
        if np.any(label[rows] >= 0):
            raise ValueError(f"block {k} repeats a row held by another block")
        label[rows] = k
    if np.any(label < 0):
        raise ValueError("the blocks do not cover every row")
    return label


def block_graph(A, label: np.ndarray, nblocks: int) -> list[set[int]]:
    """Neighbours of each block: p and q are coupled when some a_ij != 0 with i in p and j in q.
    A: a matrix or a row source (sorctl.distributed.rows), read a window at a time."""
    found = []
    for win in rows_of(A).windows(values=False):
        rows = np.repeat(label[win.r0 : win.r1], np.diff(win.indptr))
        cols = label[win.indices]
        cross = rows != cols
        found.append(np.unique(rows[cross] * nblocks + cols[cross]))
    pairs = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    adj: list[set[int]] = [set() for _ in range(nblocks)]
    for p, q in zip((pairs // nblocks).tolist(), (pairs % nblocks).tolist(), strict=True):
        adj[p].add(q)
        adj[q].add(p)  # symmetric even if A's pattern is not
    return adj


def colour_blocks(adj: Sequence[set[int]]) -> np.ndarray:
    """Greedy (largest degree first) colouring: no two coupled blocks share a colour."""
    nb = len(adj)
    colour = np.full(nb, -1, dtype=np.int64)
    for p in sorted(range(nb), key=lambda k: (-len(adj[k]), k)):
        taken = {int(colour[q]) for q in adj[p] if colour[q] >= 0}
        c = 0
        while c in taken:
            c += 1
        colour[p] = c
    return colour


def place_blocks(work: Sequence[float], colour: Sequence[int], slots: Sequence[str]) -> list[str]:
    """The node of each block. `slots` lists one entry per CPU (a node with 2 CPUs appears twice).

    Blocks of one colour run at the same time, so each colour is balanced over the CPUs on its own
    (largest block first onto the least-loaded CPU); ties go to the CPU with the least work overall.
    """
    if not slots:
        raise ValueError("no CPUs to place blocks on")
    nslots = len(slots)
    total = np.zeros(nslots)
    node_of: list[str] = [""] * len(work)
    for c in sorted(set(int(v) for v in colour)):
        mine = sorted((k for k in range(len(work)) if colour[k] == c), key=lambda k: -work[k])
        load = np.zeros(nslots)
        for k in mine:
            s = min(range(nslots), key=lambda i: (load[i], total[i], i))
            load[s] += work[k]
            total[s] += work[k]
            node_of[k] = slots[s]
    return node_of


def slots_of(node_cpus: dict[str, int]) -> list[str]:
    """One slot per CPU, interleaved across nodes so that the first slots spread over all nodes."""
    slots: list[str] = []
    most = max(node_cpus.values(), default=0)
    for i in range(most):
        slots.extend(node for node, cpus in sorted(node_cpus.items()) if cpus > i)
    return slots


def pipeline_strips(A, nstrips: int, max_strides: int = 16) -> list[np.ndarray] | None:
    """`nstrips` row sets whose couplings all run one way in A's own order, or None.
    A: a matrix or a row source (sorctl.distributed.rows): two passes over its pattern.

    Strip k holds the rows i with (i mod m) in the k-th of nstrips equal ranges of 0..m-1, for a
    stride m taken from A's offsets j - i (a grid's line length: these strips are the columns of
    a 2-D or 3-D grid in natural order). The split is kept only when every nonzero a_ij with
    i < j has strip(i) <= strip(j): then a sweep in A's own order reads, in each strip, only
    values of the same or lower strips, so the strips sweep at once as a pipeline (each one a
    few rows behind the one below) and the result is one machine's sweep, not a block-coloured
    one. A 9-point stencil or an irregular matrix has no such split.
    """
    source = rows_of(A)
    n = source.n
    if nstrips < 2 or n < 2 * nstrips:
        return None
    # One pass finds the offsets and tests the strides known so far; a stride first seen past
    # the first window (not a grid's) is tested in a second pass, only if it could win.
    offsets = np.zeros(0, dtype=np.int64)
    early: dict[int, bool] = {}  # stride -> one way so far (tested from the first row)
    late: list[int] = []
    for win in source.windows(values=False):
        found = _upper_offsets(win.indptr, win.indices, win.r0, max_strides)
        offsets = np.union1d(offsets, found)
        if offsets.size > max_strides:
            return None
        for m in found.tolist():
            if m >= 2 * nstrips and m not in early and m not in late:
                (early.__setitem__(m, True) if win.r0 == 0 else late.append(m))
        _test(win, [m for m, ok in early.items() if ok], nstrips, early)
    won = min((m for m, ok in early.items() if ok), default=None)
    contenders = sorted(m for m in late if won is None or m < won)
    if contenders:
        again = dict.fromkeys(contenders, True)
        for win in source.windows(values=False):
            _test(win, [m for m, ok in again.items() if ok], nstrips, again)
        won = min([m for m, ok in again.items() if ok] + ([won] if won is not None else []),
                  default=None)  # fmt: skip
    return None if won is None else [_strip(n, won, nstrips, k) for k in range(nstrips)]


def _test(win, strides: list[int], nstrips: int, ok: dict[int, bool]) -> None:
    """ok[m] = False for each stride m of `strides` the window breaks (see _one_way)."""
    if not strides:
        return
    alive = np.ones(len(strides), dtype=np.bool_)
    _one_way(win.indptr, win.indices, win.r0, np.array(strides, np.int64), nstrips, alive)
    for m, still in zip(strides, alive.tolist(), strict=True):
        ok[m] = ok[m] and still


def _strip(n: int, m: int, nstrips: int, k: int) -> np.ndarray:
    """The rows i < n with (i mod m) nstrips // m == k, in order (no n-long temporaries)."""
    offsets = np.arange(m, dtype=np.int64)
    offsets = offsets[offsets * nstrips // m == k]  # a contiguous range of 0..m-1
    itype = np.int32 if n < 2**31 else np.int64
    rows = (np.arange(0, n, m, dtype=np.int64)[:, None] + offsets[None, :]).ravel()
    return rows[rows < n].astype(itype)


@numba.njit(cache=True, nogil=True)  # runs beside dispy's threads (a cut made early)
def _upper_offsets(indptr, indices, row0, most):
    """The distinct offsets j - i > 0 of the window's nonzeros (row i is row0 + its place),
    stopping once there are more than `most`."""
    seen = np.empty(most + 1, dtype=np.int64)
    count = 0
    for r in range(indptr.shape[0] - 1):
        i = row0 + r
        for k in range(indptr[r], indptr[r + 1]):
            d = np.int64(indices[k]) - i
            if d <= 0:
                continue
            known = False
            for q in range(count):
                if seen[q] == d:
                    known = True
                    break
            if not known:
                seen[count] = d
                count += 1
                if count > most:
                    return seen
    return seen[:count]


@numba.njit(cache=True, nogil=True)  # runs beside dispy's threads (a cut made early)
def _one_way(indptr, indices, row0, strides, nstrips, alive):
    """alive[s] stays True while every nonzero a_ij of the window with i < j has strip(i) <=
    strip(j), strip(i) = (i mod m) nstrips // m, m = strides[s]."""
    for s in range(strides.shape[0]):
        if not alive[s]:
            continue
        m = strides[s]
        for r in range(indptr.shape[0] - 1):
            i = row0 + r
            si = (i % m) * nstrips // m
            for k in range(indptr[r], indptr[r + 1]):
                j = np.int64(indices[k])
                if j > i and (j % m) * nstrips // m < si:
                    alive[s] = False
                    break
            if not alive[s]:
                break


def warm() -> None:
    """Compile (or load from numba's cache) the strip search for int32 and int64 indices."""
    for itype in (np.int32, np.int64):
        indptr = np.array([0, 2, 3], dtype=np.int64)  # a window's row pointer
        indices = np.array([0, 1, 1], dtype=itype)
        _upper_offsets(indptr, indices, 0, 4)
        _one_way(indptr, indices, 0, np.array([2]), 2, np.ones(1, np.bool_))
