"""Workers for the driver without a cluster: the same node.serve and WorkerPool code the nodes
run, on loopback (no dispy), as threads (fast) or as processes (which a test can kill)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from sorctl.distributed import node
from sorctl.distributed.workers import WorkerPool

CTX = multiprocessing.get_context("spawn")  # not fork: the pool has threads running


def slots(node_cpus: dict[str, int]) -> list[str]:
    """Slot names as dispy_executor makes them: NODE, NODE#1, ... for a node's CPUs."""
    return [f"{n}#{k}" if k else n for n, cpus in sorted(node_cpus.items()) for k in range(cpus)]


@contextlib.contextmanager
def workers(
    node_cpus: dict[str, int] | None = None,
    *,
    processes: bool = False,
    tls: tuple[str, str] | None = None,
) -> Iterator[WorkerPool]:
    """A WorkerPool whose workers connected back. With processes=True, pool.kill(slot) kills
    one the way `docker kill` ends a node: no goodbye."""
    pool = WorkerPool("127.0.0.1", tls)
    cadata = Path(tls[0]).read_text() if tls else ""
    running: dict[str, threading.Thread | multiprocessing.process.BaseProcess] = {}
    for slot in slots(node_cpus or {"local": 1}):
        args = (pool.address, pool.authkey, slot, 120, cadata)
        w = (
            CTX.Process(target=node.serve, args=args)
            if processes
            else threading.Thread(target=node.serve, args=args, daemon=True)
        )
        w.start()
        running[slot] = w
        pool.expect(slot, lambda w=w: "" if w.is_alive() else "the worker ended")
    pool.wait_connected(60)

    def kill(slot: str) -> None:
        proc = running[slot]
        assert isinstance(proc, multiprocessing.process.BaseProcess), "threads cannot be killed"
        os.kill(proc.pid or 0, signal.SIGKILL)
        proc.join(10)

    pool.kill = kill  # type: ignore[attr-defined]
    try:
        yield pool
    finally:
        pool.close()
        for w in running.values():
            w.join(10)
            if isinstance(w, multiprocessing.process.BaseProcess) and w.is_alive():
                w.kill()
