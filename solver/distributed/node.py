"""Node side of the distributed solve: a file cache of blocks and the jobs that sweep them.

Every dispy job is a fresh fork, so nothing a job keeps in memory survives it. A block is therefore
stored once, as raw .npy files under the job's working directory (dispy removes that directory
when the computation closes), and every later job maps those files (np.load with mmap_mode, no
pickle): the block's rows of A never travel again, and its values stay on the node between jobs.
A sweep job carries only the halo values in and the block's interface values out.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import numpy as np

from solver.distributed.blocks import NODE_ARRAYS
from solver.kernels.csr import residual_norm2, sor_backward, sor_forward

CACHE = "sorctl-blocks"
_SOLVE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def warm() -> None:
    """Compile (or load from numba's cache) the kernels for the exact argument types jobs use,
    before jobs fork: a job's own compilation would die with it. Blocks are read-only maps
    (numba types read-only arrays apart) and xext a writable one."""

    def ro(a: np.ndarray) -> np.ndarray:
        a.flags.writeable = False
        return a

    for itype in (np.int32, np.int64):
        indptr = ro(np.array([0, 1], dtype=itype))
        indices = ro(np.array([0], dtype=itype))
        one = ro(np.ones(1))
        x = np.zeros(2)
        sor_forward(indptr, indices, one, one, one, x, 1.0, 1)
        sor_backward(indptr, indices, one, one, one, x, 1.0, 1)
        residual_norm2(indptr, indices, one, one, x)


def run(root: str, op: str, solve_id: str, block_id: int, payload):
    """One job: `op` is load | sweep | residual | gather | drop (see the functions below)."""
    if not _SOLVE_ID.match(solve_id):
        raise ValueError(f"bad solve id {solve_id!r}")
    if op == "drop":
        shutil.rmtree(os.path.join(root, CACHE, solve_id), ignore_errors=True)
        return None
    path = os.path.join(root, CACHE, solve_id, f"b{int(block_id)}")
    if op == "load":
        return load(path, *payload)
    blk = _open(path)
    if op == "sweep":
        return sweep(blk, *payload)
    if op == "residual":
        return residual(blk, payload)
    if op == "gather":
        return np.array(blk["xext"][: blk["diag"].size])
    raise ValueError(f"unknown job {op!r}")


def load(path: str, arrays: dict[str, np.ndarray], x_b: np.ndarray, nhalo: int) -> int:
    """Store a block (replacing any older copy); returns the bytes stored."""
    tmp = f"{path}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in NODE_ARRAYS:
        np.save(os.path.join(tmp, name + ".npy"), np.ascontiguousarray(arrays[name]))
    xext = np.zeros(x_b.size + 1 + int(nhalo))
    xext[: x_b.size] = x_b
    np.save(os.path.join(tmp, "xext.npy"), xext)
    shutil.rmtree(path, ignore_errors=True)
    os.rename(tmp, path)
    return sum(a.nbytes for a in arrays.values()) + xext.nbytes


def _open(path: str) -> dict[str, np.ndarray]:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"block not on this node: {path}")
    blk = {
        name: np.asarray(np.load(os.path.join(path, name + ".npy"), mmap_mode="r"))
        for name in NODE_ARRAYS
    }
    # Writable mapping: the sweep updates the node's copy of x_b in place.
    blk["xext"] = np.asarray(np.load(os.path.join(path, "xext.npy"), mmap_mode="r+"))
    return blk


def _set_halo(blk: dict[str, np.ndarray], halo: np.ndarray) -> np.ndarray:
    xext = blk["xext"]
    xext[blk["diag"].size + 1 :] = halo
    return xext


def sweep(
    blk: dict[str, np.ndarray], halo: np.ndarray, omega: float, sweeps: int, backward: bool
) -> tuple[np.ndarray, float]:
    """`sweeps` SOR sweeps on the block's rows with the given halo.

    Returns (interface values, seconds in the kernel)."""
    xext = _set_halo(blk, halo)
    kernel = sor_backward if backward else sor_forward
    t0 = time.perf_counter()
    kernel(blk["indptr"], blk["indices"], blk["data"], blk["diag"], blk["b"], xext, omega, sweeps)
    seconds = time.perf_counter() - t0
    return xext[blk["iface"]], seconds


def residual(blk: dict[str, np.ndarray], halo: np.ndarray) -> tuple[float, float]:
    """||b_b - A_b x||^2 over the block's rows with the given halo; returns (value, seconds)."""
    xext = _set_halo(blk, halo)
    t0 = time.perf_counter()
    r2 = residual_norm2(blk["indptr"], blk["indices"], blk["data"], blk["b"], xext)
    return float(r2), time.perf_counter() - t0
