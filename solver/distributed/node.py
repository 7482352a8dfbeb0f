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
_OPEN: dict[str, tuple[int, dict[str, np.ndarray]]] = {}  # block dir -> (inode, mapped arrays)


def warm() -> None:
    """Compile (or load from numba's cache) the kernels for the exact argument types jobs use,
    before jobs fork: a job's own compilation would die with it. Blocks are read-only maps
    (numba types read-only arrays apart) and xext a writable one."""

    def ro(a: np.ndarray) -> np.ndarray:
        a.flags.writeable = False
        return a

    # int32 indices: blocks beyond 2**31 entries (int64) compile on first use instead
    indptr = ro(np.array([0, 1], dtype=np.int32))
    indices = ro(np.array([0], dtype=np.int32))
    one = ro(np.ones(1))
    x = np.zeros(2)
    sor_forward(indptr, indices, one, one, one, x, 1.0, 1)
    sor_backward(indptr, indices, one, one, one, x, 1.0, 1)
    residual_norm2(indptr, indices, one, one, x)


def run(root: str, op: str, solve_id: str, block_id: int, payload):
    """One request: `op` is load | sweep | residual | gather | drop (see the functions below),
    or serve (a worker: answer requests from the driver until it hangs up)."""
    if op == "serve":
        return serve(root, *payload)
    if not _SOLVE_ID.match(solve_id):
        raise ValueError(f"bad solve id {solve_id!r}")
    if op == "drop":
        for key in [k for k in _OPEN if k.startswith(os.path.join(root, CACHE, solve_id, ""))]:
            del _OPEN[key]
        shutil.rmtree(os.path.join(root, CACHE, solve_id), ignore_errors=True)
        return None
    path = os.path.join(root, CACHE, solve_id, f"b{int(block_id)}")
    if op == "load":
        _OPEN.pop(path, None)
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
    """The block's arrays, mapped once per process (a worker keeps them between requests)."""
    try:
        ino = os.stat(path).st_ino  # a reloaded block is a new directory
    except FileNotFoundError:
        raise FileNotFoundError(f"block not on this node: {path}") from None
    hit = _OPEN.get(path)
    if hit is not None and hit[0] == ino:
        return hit[1]
    blk = {
        name: np.asarray(np.load(os.path.join(path, name + ".npy"), mmap_mode="r"))
        for name in NODE_ARRAYS
    }
    # Writable mapping: the sweep updates the node's copy of x_b in place.
    blk["xext"] = np.asarray(np.load(os.path.join(path, "xext.npy"), mmap_mode="r+"))
    _OPEN[path] = (ino, blk)
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


def serve(root: str, address: tuple[str, int], authkey: bytes, worker: str, idle_s: float) -> int:
    """A worker: connect back to the driver and answer its requests until it hangs up.

    One dispy job per CPU for the whole solve, so a request costs a message each way on an open
    connection instead of a dispy job (a fork on the node and two hops through the scheduler).
    Returns the number of requests served. Ends on hang-up, on `idle_s` without a request, or
    when TCP keepalive finds the driver gone, so a vanished client never holds the CPU long.
    """
    from multiprocessing.connection import Client

    warm()
    conn = Client((str(address[0]), int(address[1])), authkey=authkey)
    tune_socket(conn.fileno())
    conn.send(("hello", worker))
    served = 0
    try:
        while conn.poll(idle_s):
            msg = conn.recv()
            if msg is None:
                break
            seq, op, solve_id, block_id, payload = msg
            try:
                reply = (seq, True, run(root, op, solve_id, block_id, payload))
            except Exception as exc:  # noqa: BLE001 -- the driver reports it
                reply = (seq, False, f"{type(exc).__name__}: {exc}")
            conn.send(reply)
            served += 1
    except (EOFError, OSError):
        pass
    finally:
        conn.close()
    return served


def tune_socket(fd: int, idle: int = 10, interval: int = 5, count: int = 3) -> None:
    """TCP_NODELAY (requests and replies are small and pipelined: Nagle plus delayed ACKs would
    hold every second one ~40 ms) and keepalive (a vanished peer shows in ~idle + interval *
    count s) on a connected socket."""
    import socket

    with socket.socket(fileno=os.dup(fd)) as s:  # the dup shares the socket; closing it does not
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, val in (
            ("TCP_KEEPIDLE", idle),
            ("TCP_KEEPINTVL", interval),
            ("TCP_KEEPCNT", count),
        ):
            if hasattr(socket, opt):
                s.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), val)
