"""The executor on a real cluster: dispy places one long-running worker job per node CPU, and the
driver talks to the workers over direct connections (sorctl.distributed.workers).

A dispy job per block and colour costs ~10-20 ms (a fork on the node, two hops through the
scheduler, a new TCP connection per submit): more than a sweep of a million rows. So each CPU
runs one worker job for the whole solve (sorctl.distributed.node.serve) that connects back to
this client and answers requests; dispy does discovery, placement, setup, and noticing dead
nodes (their worker jobs come back Abandoned).

Runs inside the client container only (dispy discovers by broadcast: never on a host's own
network). Facts this code leans on (measured with dispy 4.15.2):
- `setup=` always: without it dispynode races and short jobs end Terminated. dispynode gives
  setup 10 s, so it only imports the node module; each worker compiles (or loads from numba's
  cache) the kernels before it connects back.
- A job pinned with submit_node to a node that dies comes back Abandoned (the scheduler runs
  with --pulse_interval to notice); submit_node returns None for an unknown node. Nothing here
  waits without a deadline.
- SharedJobCluster needs its own address (ip_addr=) and client_port=0, and a unique
  recover_file per client.
- A TLS dispyscheduler does the handshake inside its accept loop, and a failed one (a plain
  connect and close) ends that loop: its client port stays open, answers nothing, and every
  job submission then times out. So the health probe completes a TLS handshake.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sorctl.distributed.workers import WorkerPool
from sorctl.errors import ClusterError
from sorctl.names import CLIENT_PORT
from sorctl.options import DEFAULTS

HEALTH_EVERY_S = 10.0  # each probe is a line in the scheduler's log


def _client_tls(certfile: str) -> ssl.SSLContext:
    """dispy's TLS model: the cluster's one certificate is the CA, no host name check."""
    ctx = ssl.create_default_context(cafile=certfile)
    ctx.check_hostname = False
    return ctx


def sorctl_setup():  # runs on each node once per computation; its globals reach every job
    global sorctl_node  # dispy gives setup 10 s: import here, compile in the worker (node.serve)
    from sorctl.distributed import node as sorctl_node

    return 0


def sorctl_worker(address, authkey, slot, idle_s, cadata):  # the computation: one per CPU
    return sorctl_node.serve(address, authkey, slot, idle_s, cadata)  # noqa: F821


class DispyExecutor:
    """Workers on the nodes of a dispyscheduler, placed through one SharedJobCluster."""

    def __init__(
        self,
        scheduler: str,
        *,
        host: str,
        secret: str = "",
        certfile: str | None = None,
        keyfile: str | None = None,
        client_port: int = CLIENT_PORT,
        want_nodes: int = 1,
        ready_timeout: float = DEFAULTS.ready_timeout_s,
        idle_s: float = 900.0,
        log=lambda msg: None,
    ) -> None:
        from sorctl.distributed import dispy_compat

        dispy_compat.apply()
        import dispy

        self._dispy = dispy
        self._scheduler = scheduler
        self._client_port = client_port
        self._log = log
        self._last_health = 0.0
        self._tls = _client_tls(certfile) if certfile else None
        self.pool: WorkerPool | None = None
        recover = os.path.join(tempfile.mkdtemp(prefix="sorctl-dispy-"), "recover")
        made: dict[str, Any] = {}

        def make() -> None:  # waits for the scheduler without a timeout of its own
            try:
                made["cluster"] = dispy.SharedJobCluster(
                    sorctl_worker,
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
            except Exception as exc:  # noqa: BLE001 -- reported below, one line
                made["error"] = exc

        maker = threading.Thread(target=make, daemon=True)
        maker.start()
        maker.join(ready_timeout)
        if "cluster" not in made:
            why = made.get("error") or f"no answer within {ready_timeout:.0f} s"
            raise ClusterError(f"the scheduler at {scheduler} did not take the computation: {why}")
        self.cluster = made["cluster"]
        try:
            node_cpus = self._wait_nodes(want_nodes, ready_timeout)
            tls = (certfile, keyfile or certfile) if certfile else None
            self._start_workers(host, node_cpus, idle_s, ready_timeout, tls)
        except BaseException:
            self.close()
            raise

    def _status_nodes(self) -> dict[str, int]:
        info = self.cluster.status()
        # update_time > 0: the node ran our setup; before that submit_node drops jobs silently.
        return {n.ip_addr: int(n.cpus) for n in info.nodes if n.update_time and n.cpus > 0}

    def _wait_nodes(self, want: int, timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        seen: dict[str, int] = {}
        while time.monotonic() < deadline:
            seen = self._status_nodes()
            if len(seen) >= want:
                return seen
            self.health()
            time.sleep(0.2)  # polling dispy's own view; it offers no event to wait on
        if not seen:
            raise ClusterError(
                f"no node took the computation within {timeout:.0f} s (scheduler {self._scheduler})"
            )
        self._log(f"only {len(seen)} of {want} nodes ready after {timeout:.0f} s; going on")
        return seen

    def _start_workers(
        self,
        host: str,
        node_cpus: dict[str, int],
        idle_s: float,
        timeout: float,
        tls: tuple[str, str] | None,
    ):
        """One worker job per node CPU; on a TLS cluster the workers connect back over TLS
        (they get the certificate's text, public; the key stays in this client)."""
        self.pool = pool = WorkerPool(host, tls)
        cadata = Path(tls[0]).read_text() if tls else ""
        for node, cpus in sorted(node_cpus.items()):
            for k in range(cpus):
                slot = f"{node}#{k}" if k else node
                job = self.cluster.submit_node(
                    node, pool.address, pool.authkey, slot, idle_s, cadata
                )
                if job is None:
                    self._log(f"node {node} refused a worker; leaving it out")
                    continue
                pool.expect(slot, functools.partial(self._job_end, job))
        pool.wait_connected(timeout)
        for slot, why in pool.failures().items():
            self._log(f"worker {slot}: {why}")
        if not pool.nodes():
            why = next(iter(pool.failures().values()), "no nodes")
            raise ClusterError(f"no worker could connect back to this client ({why})")

    def _job_end(self, job: Any) -> str:
        """Why a worker's job ended ("" while it runs)."""
        if not job.finish.is_set():
            return ""
        D = self._dispy.DispyJob
        status = {
            D.Abandoned: "abandoned (node gone)",
            D.Cancelled: "cancelled",
            D.Terminated: "terminated",
            D.Finished: "ended",
        }.get(job.status, f"status {job.status}")
        detail = (job.exception or "").strip().splitlines()
        return f"worker job {status}" + (f": {detail[-1]}" if detail else "")

    # -- the Executor protocol ------------------------------------------------------------------
    @property
    def tls_pem(self) -> tuple[str, str] | None:
        return self.pool.tls_pem if self.pool else None

    def nodes(self) -> dict[str, int]:
        return self.pool.nodes() if self.pool else {}

    def submit(self, node: str, op: str, solve_id: str, block_id: int, payload: Any):
        assert self.pool is not None, "workers start in __init__"
        return self.pool.submit(node, op, solve_id, block_id, payload)

    def forget(self, node: str) -> None:
        if self.pool is not None:
            self.pool.forget(node)

    def health(self) -> None:
        """The scheduler must still accept connections on its client port (asked at most every
        HEALTH_EVERY_S; the first call after start-up always asks)."""
        if time.monotonic() - self._last_health < HEALTH_EVERY_S:
            return
        self._last_health = time.monotonic()
        for attempt in range(2):
            try:
                with socket.create_connection((self._scheduler, self._client_port), timeout=3) as s:
                    if self._tls is not None:
                        # A TLS scheduler must see a whole handshake: dispyscheduler does it
                        # inside its accept loop, and one that fails (a bare connect and close)
                        # ends that loop for good -- every later job submission then times out.
                        self._tls.wrap_socket(s).close()
                    return
            except OSError as exc:
                if attempt:
                    raise ClusterError(
                        f"the scheduler at {self._scheduler}:{self._client_port} does not answer: "
                        f"{exc.strerror or exc}"
                    ) from None

    def close(self, timeout: float = 15.0) -> None:
        """Hang up on the workers (they end), then close the computation (nodes delete its
        files). Bounded: a gone scheduler must not keep the client from exiting."""
        if self.pool is not None:
            self.pool.close()

        def _close() -> None:
            try:
                self.cluster.close(timeout=5, terminate=True)
                self.cluster.shutdown()
            except Exception:  # noqa: BLE001 -- best effort; the process exits next
                pass

        t = threading.Thread(target=_close, daemon=True)
        t.start()
        t.join(timeout)
