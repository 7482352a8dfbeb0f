"""The seam between the driver and whatever runs block jobs: dispy on a cluster, or this process.

An executor knows the live nodes and their CPUs, runs one job on a named node, and says when a
node is gone (NodeLost) so the driver can move that node's blocks. The in-process executor runs
the very same node code (solver.distributed.node) on per-"node" directories, and can be told to
lose a node after some jobs, which is how the unit tests exercise the failure path.
"""

from __future__ import annotations

from typing import Any, Protocol

from solver.distributed.node import BlockStore


def machine(slot: str) -> str:
    """The node behind an executor slot: slots are "NODE", or "NODE#k" for its k-th CPU."""
    return slot.split("#", 1)[0]


class NodeLost(Exception):
    """The node running a job is gone (killed, unreachable); its blocks must move."""

    def __init__(self, node: str, why: str) -> None:
        super().__init__(f"node {node} lost: {why}")
        self.node = node
        self.why = why


class ClusterFailed(RuntimeError):
    """The solve cannot go on: scheduler gone, every node gone, or a job failing on the node."""


class Job(Protocol):
    node: str

    def wait(self, timeout: float) -> bool:
        """True once the job has an outcome (result, error or node lost)."""

    def outcome(self) -> Any:
        """The job's result; raises NodeLost if its node went away, ClusterFailed if it failed."""


class Executor(Protocol):
    def nodes(self) -> dict[str, int]:
        """Live nodes and their CPUs."""

    def submit(self, node: str, op: str, solve_id: str, block_id: int, payload: Any) -> Job:
        """Run solver.distributed.node.run(<node dir>, op, solve_id, block_id, payload) there."""

    def forget(self, node: str) -> None:
        """Stop using `node` (the driver saw it lost)."""

    def health(self) -> None:
        """Raise ClusterFailed if the cluster as a whole cannot answer any more (scheduler gone)."""

    def close(self) -> None:
        """Release the cluster (cancel what is pending; node-side caches are removed)."""


class _DoneJob:
    def __init__(self, node: str, result: Any = None, error: BaseException | None = None) -> None:
        self.node = node
        self._result = result
        self._error = error

    def wait(self, timeout: float) -> bool:
        return True

    def outcome(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result


class LocalExecutor:
    """Runs requests synchronously in this process, one block store per pretend node.

    `lose_after={node: k}` makes `node` vanish after it has run k jobs: later jobs on it report
    NodeLost, as dispy reports jobs pinned to a killed node as Abandoned.
    """

    def __init__(
        self, node_cpus: dict[str, int] | None = None, lose_after: dict[str, int] | None = None
    ):
        self._cpus = dict(node_cpus or {"local": 1})
        self._lose_after = dict(lose_after or {})
        self._ran = {name: 0 for name in self._cpus}
        self._dead: set[str] = set()
        self._stores = {name: BlockStore() for name in self._cpus}
        self.jobs_run = 0

    def nodes(self) -> dict[str, int]:
        return {n: c for n, c in self._cpus.items() if n not in self._dead}

    def submit(self, node: str, op: str, solve_id: str, block_id: int, payload: Any) -> _DoneJob:
        limit = self._lose_after.get(node)
        if (
            node in self._dead
            or node not in self._cpus
            or (limit is not None and self._ran[node] >= limit)
        ):
            return _DoneJob(node, error=NodeLost(node, "pretend node lost"))
        self._ran[node] += 1
        self.jobs_run += 1
        try:
            return _DoneJob(node, self._stores[node].run(op, solve_id, block_id, payload))
        except Exception as exc:  # what a job's exception looks like through dispy
            return _DoneJob(
                node, error=ClusterFailed(f"job {op} on block {block_id} failed on {node}: {exc}")
            )

    def forget(self, node: str) -> None:
        self._dead.add(node)
        self._stores.pop(node, None)

    def health(self) -> None:
        return None

    def close(self) -> None:
        self._stores.clear()
