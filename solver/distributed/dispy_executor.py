"""The executor on a real cluster: a dispy SharedJobCluster talking to the cluster's scheduler.

Runs inside the client container only (dispy discovers by broadcast: never on a host's own
network). Facts this code leans on (../shared/notes/dispy.md, dispy 4.15.2):
- `setup=` always: without it dispynode races and short jobs end Terminated. The setup also
  imports the node module and its compiled kernels, so forked jobs start warm.
- Jobs pinned with submit_node to a node that dies come back Abandoned (the scheduler needs
  --pulse_interval to notice), and submit_node returns None for an unknown node: both are
  reported as NodeLost. Nothing here waits on a job without a deadline.
- SharedJobCluster needs its own address (ip_addr=) and client_port=0, and a unique
  recover_file per client.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from typing import Any

from solver.distributed.executor import ClusterFailed, NodeLost


def sorctl_setup():  # runs on each node once per computation; its globals reach every job
    global sorctl_node
    from solver.distributed import node as sorctl_node

    sorctl_node.warm()
    return 0


def sorctl_job(op, solve_id, block_id, payload):  # the computation: one block job
    import os

    return sorctl_node.run(os.getcwd(), op, solve_id, block_id, payload)  # noqa: F821


class _Job:
    def __init__(self, executor: DispyExecutor, node: str, job: Any) -> None:
        self.node = node
        self._ex = executor
        self._job = job

    def wait(self, timeout: float) -> bool:
        if self._job.finish.wait(timeout):
            return True
        # A pinned job queued on a node the scheduler has dropped never finishes: stop waiting.
        return not self._ex.is_live(self.node)

    def outcome(self) -> Any:
        import dispy

        job = self._job
        if not job.finish.is_set():
            raise NodeLost(self.node, "the scheduler dropped the node")
        if job.status == dispy.DispyJob.Finished:
            return job.result
        if job.status in (dispy.DispyJob.Abandoned, dispy.DispyJob.Cancelled):
            raise NodeLost(self.node, "job abandoned (node gone)")
        detail = (job.exception or job.stderr or "no detail").strip().splitlines()
        raise ClusterFailed(f"a job failed on node {self.node}: {detail[-1] if detail else ''}")


class _Lost:
    def __init__(self, node: str, why: str) -> None:
        self.node = node
        self._why = why

    def wait(self, timeout: float) -> bool:
        return True

    def outcome(self) -> Any:
        raise NodeLost(self.node, self._why)


class DispyExecutor:
    """Block jobs on the nodes of a dispyscheduler, through one SharedJobCluster."""

    def __init__(
        self,
        scheduler: str,
        *,
        host: str,
        secret: str = "",
        certfile: str | None = None,
        keyfile: str | None = None,
        client_port: int = 9702,
        want_nodes: int = 1,
        ready_timeout: float = 60.0,
        log=lambda msg: None,
    ) -> None:
        from solver import dispy_compat

        dispy_compat.apply()
        import dispy

        self._scheduler = scheduler
        self._client_port = client_port
        self._forgotten: set[str] = set()
        self._log = log
        recover = os.path.join(tempfile.mkdtemp(prefix="sorctl-dispy-"), "recover")
        self.cluster = dispy.SharedJobCluster(
            sorctl_job,
            setup=sorctl_setup,
            nodes=["*"],
            ip_addr=host,
            scheduler_host=scheduler,
            client_port=0,
            secret=secret,
            certfile=certfile,
            keyfile=keyfile,
            recover_file=recover,
            loglevel=dispy.logger.WARNING,
        )
        self._wait_ready(want_nodes, ready_timeout)

    def _status_nodes(self) -> dict[str, int]:
        info = self.cluster.status()
        # update_time > 0: the node ran our setup; before that submit_node drops jobs silently.
        return {n.ip_addr: int(n.cpus) for n in info.nodes if n.update_time and n.cpus > 0}

    def _wait_ready(self, want: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen: dict[str, int] = {}
        while time.monotonic() < deadline:
            seen = self._status_nodes()
            if len(seen) >= want:
                return
            self.health()
            time.sleep(0.2)  # polling the client's own view; there is no event to wait on
        if not seen:
            raise ClusterFailed(
                f"no node took the computation within {timeout:.0f} s (scheduler {self._scheduler})"
            )
        self._log(f"only {len(seen)} of {want} nodes ready after {timeout:.0f} s; going on")

    def nodes(self) -> dict[str, int]:
        return {n: c for n, c in self._status_nodes().items() if n not in self._forgotten}

    def is_live(self, node: str) -> bool:
        return node not in self._forgotten and node in self._status_nodes()

    def submit(self, node: str, op: str, solve_id: str, block_id: int, payload: Any):
        job = self.cluster.submit_node(node, op, solve_id, block_id, payload)
        if job is None:
            self.health()  # a gone scheduler also makes submit_node return None
            return _Lost(node, "the scheduler refused a job for it (node unknown)")
        return _Job(self, node, job)

    def forget(self, node: str) -> None:
        self._forgotten.add(node)

    def health(self) -> None:
        """The scheduler must still accept connections on its client port."""
        for attempt in range(2):
            try:
                with socket.create_connection((self._scheduler, self._client_port), timeout=3):
                    return
            except OSError as exc:
                if attempt:
                    raise ClusterFailed(
                        f"the scheduler at {self._scheduler}:{self._client_port} does not answer: "
                        f"{exc.strerror or exc}"
                    ) from None

    def close(self, timeout: float = 15.0) -> None:
        """Cancel what is pending and close the computation (nodes then delete its files).
        Bounded: a gone scheduler must not keep the client from exiting."""

        def _close() -> None:
            try:
                self.cluster.close(timeout=5, terminate=True)
                self.cluster.shutdown()
            except Exception:  # noqa: BLE001 -- best effort; the process exits next
                pass

        t = threading.Thread(target=_close, daemon=True)
        t.start()
        t.join(timeout)
