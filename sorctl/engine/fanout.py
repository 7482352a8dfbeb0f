"""One thing done to many items at once (containers, hosts), for the whole engine package: a
thread each (up to a bound), results in the items' order, the first failure raised."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 16  # a Docker call mostly waits on the engine; more only queue there


def parallel(fn: Callable[[T], R], items: Iterable[T], max_threads: int = MAX_THREADS) -> list[R]:
    """[fn(item) for item in items], run side by side; every call finishes before the first
    exception (in the items' order) is raised, so nothing is left running behind the caller.
    The results are awaited inside the pool's block: a Ctrl-C lands there, and leaving the
    block still waits for the calls under way (an interrupted `up` then undoes all it made)."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(max_threads, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        return [f.result() for f in futures]
