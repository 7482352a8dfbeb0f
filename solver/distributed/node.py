"""Node side of the distributed solve: a worker that holds blocks in memory and sweeps them.

One worker process per node CPU lives for the whole solve (a long-running dispy job). A block's
rows of A arrive once (`load`) and stay in the worker's memory with the block's current values;
afterwards a sweep request carries only the halo values in and the block's interface values out.
Plain anonymous memory, not files: a file-backed mapping of x written every sweep made the
kernel about twice as slow in a node container (dirty-page write-back and write faults).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from solver.distributed.blocks import NODE_ARRAYS
from solver.kernels.csr import residual_norm2, sor_backward, sor_forward

Block = dict[str, np.ndarray]


def warm() -> None:
    """Compile (or load from numba's cache) the kernels for the argument types blocks use:
    int32 indices, float64 values (blocks beyond 2**31 entries compile on first use)."""
    indptr = np.array([0, 1], dtype=np.int32)
    indices = np.array([0], dtype=np.int32)
    one = np.ones(1)
    x = np.zeros(2)
    sor_forward(indptr, indices, one, one, one, x, 1.0, 1)
    sor_backward(indptr, indices, one, one, one, x, 1.0, 1)
    residual_norm2(indptr, indices, one, one, x)


class BlockStore:
    """The blocks one worker holds: (solve id, block number) -> arrays, plus xext, the block's
    values followed by one unused slot and its halo values (see solver.distributed.blocks)."""

    def __init__(self) -> None:
        self.blocks: dict[tuple[str, int], Block] = {}

    def run(self, op: str, solve_id: str, block_id: int, payload: Any) -> Any:
        """One request: load | sweep | residual | gather | drop."""
        key = (str(solve_id), int(block_id))
        if op == "drop":
            for k in [k for k in self.blocks if k[0] == key[0]]:
                del self.blocks[k]
            return None
        if op == "load":
            self.blocks[key] = load(*payload)
            return sum(a.nbytes for a in self.blocks[key].values())
        blk = self.blocks.get(key)
        if blk is None:
            raise LookupError(f"block {block_id} of solve {solve_id} is not on this node")
        if op == "sweep":
            return sweep(blk, *payload)
        if op == "residual":
            return residual(blk, payload)
        if op == "gather":
            return blk["xext"][: blk["diag"].size].copy()
        raise ValueError(f"unknown request {op!r}")


def load(arrays: dict[str, np.ndarray], x_b: np.ndarray, nhalo: int) -> Block:
    blk = {name: np.ascontiguousarray(arrays[name]) for name in NODE_ARRAYS}
    xext = np.zeros(x_b.size + 1 + int(nhalo))
    xext[: x_b.size] = x_b
    blk["xext"] = xext
    return blk


def _set_halo(blk: Block, halo: np.ndarray) -> np.ndarray:
    xext = blk["xext"]
    xext[blk["diag"].size + 1 :] = halo
    return xext


def sweep(
    blk: Block, halo: np.ndarray, omega: float, sweeps: int, backward: bool
) -> tuple[np.ndarray, float]:
    """`sweeps` SOR sweeps on the block's rows with the given halo.

    Returns (interface values, seconds in the kernel)."""
    xext = _set_halo(blk, halo)
    kernel = sor_backward if backward else sor_forward
    t0 = time.perf_counter()
    kernel(blk["indptr"], blk["indices"], blk["data"], blk["diag"], blk["b"], xext, omega, sweeps)
    seconds = time.perf_counter() - t0
    return xext[blk["iface"]], seconds


def residual(blk: Block, halo: np.ndarray) -> tuple[float, float]:
    """||b_b - A_b x||^2 over the block's rows with the given halo; returns (value, seconds)."""
    xext = _set_halo(blk, halo)
    t0 = time.perf_counter()
    r2 = residual_norm2(blk["indptr"], blk["indices"], blk["data"], blk["b"], xext)
    return float(r2), time.perf_counter() - t0


def serve(
    address: tuple[str, int], authkey: bytes, worker: str, idle_s: float, cadata: str = ""
) -> int:
    """A worker: connect back to the driver and answer its requests until it hangs up.

    One dispy job per CPU for the whole solve, so a request costs a message each way on an open
    connection instead of a dispy job (a fork on the node and two hops through the scheduler).
    Returns the number of requests served. Ends on hang-up, on `idle_s` without a request, or
    when TCP keepalive finds the driver gone, so a vanished client never holds the CPU long.
    `cadata` (a TLS cluster's certificate, PEM text): connect over TLS checked against it.
    """
    from multiprocessing.connection import Client

    warm()
    store = BlockStore()
    where = (str(address[0]), int(address[1]))
    if cadata:
        from solver.distributed import tls_link

        conn: Any = tls_link.connect(where, authkey, cadata)
    else:
        conn = Client(where, authkey=authkey)
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
                reply = (seq, True, store.run(op, solve_id, block_id, payload))
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
    import os
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
