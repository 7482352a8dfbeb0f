"""The seam between the driver and whatever runs its workers: dispy on a cluster
(dispy_executor), or plain processes and threads on loopback in the tests (workers.WorkerPool).

An executor knows the live worker slots, sends one request to a named slot, and says when a slot
is gone (NodeLost) so the driver can move that slot's blocks.
"""

from __future__ import annotations

from typing import Any, Protocol


def machine(slot: str) -> str:
    """The node behind an executor slot: slots are "NODE", or "NODE#k" for its k-th CPU."""
    return slot.split("#", 1)[0]


class NodeLost(Exception):
    """The node running a job is gone (killed, unreachable); its blocks must move."""

    def __init__(self, node: str, why: str) -> None:
        super().__init__(f"node {node} lost: {why}")
        self.node = node
        self.why = why


class Job(Protocol):
    node: str

    def wait(self, timeout: float) -> bool:
        """True once the job has an outcome (result, error or node lost)."""

    def outcome(self) -> Any:
        """The job's result; raises NodeLost if its node went away, ClusterError if it failed."""


class Executor(Protocol):
    @property
    def tls_pem(self) -> tuple[str, str] | None:
        """(certificate, key) PEM text on a TLS cluster: the workers' links to each other."""

    def nodes(self) -> dict[str, int]:
        """Live nodes and their CPUs."""

    def submit(self, node: str, op: str, solve_id: str, block_id: int, payload: Any) -> Job:
        """Have that worker run sorctl.distributed.node.BlockStore.run(op, ...)."""

    def forget(self, node: str) -> None:
        """Stop using `node` (the driver saw it lost)."""

    def health(self) -> None:
        """Raise ClusterError if the cluster as a whole cannot answer any more (scheduler gone)."""

    def close(self) -> None:
        """Release the cluster (cancel what is pending; node-side caches are removed)."""
