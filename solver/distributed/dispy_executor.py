"""The executor on a real cluster: dispy places one long-running worker job per node CPU, and the
driver talks to the workers over direct connections.

A dispy job per block and colour costs ~10-20 ms (a fork on the node, two hops through the
scheduler, a new TCP connection per submit): more than a sweep of a million rows. So each CPU
runs one worker job for the whole solve (solver.distributed.node.serve) that connects back to
this client (multiprocessing.connection: length-prefixed messages, HMAC challenge with a key
made for this solve) and answers requests; dispy still does discovery, placement, setup and
noticing dead nodes.

Runs inside the client container only (dispy discovers by broadcast: never on a host's own
network). Facts this code leans on (../shared/notes/dispy.md, dispy 4.15.2):
- `setup=` always: without it dispynode races and short jobs end Terminated. dispynode gives
  setup 10 s, so it only imports the node module; each worker compiles (or loads from numba's
  cache) the kernels before it connects back.
- A job pinned with submit_node to a node that dies comes back Abandoned (the scheduler runs
  with --pulse_interval to notice); submit_node returns None for an unknown node. Either way
  that worker is lost (NodeLost). Nothing here waits without a deadline.
- SharedJobCluster needs its own address (ip_addr=) and client_port=0, and a unique
  recover_file per client.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import threading
import time
from multiprocessing.connection import Connection, Listener
from typing import Any

from solver.distributed.executor import ClusterFailed, NodeLost

HEALTH_EVERY_S = 3.0


def sorctl_setup():  # runs on each node once per computation; its globals reach every job
    global sorctl_node  # dispy gives setup 10 s: import here, compile in the worker (node.serve)
    from solver.distributed import node as sorctl_node

    return 0


def sorctl_job(op, solve_id, block_id, payload):  # the computation (here: always a worker)
    import os

    return sorctl_node.run(os.getcwd(), op, solve_id, block_id, payload)  # noqa: F821


def machine(slot: str) -> str:
    """The node address of a worker slot ("ADDR" or "ADDR#k" for the k-th CPU)."""
    return slot.split("#", 1)[0]


def _bound_sends(fd: int, seconds: int) -> None:
    """A send to a peer that vanished without a reset (a killed container) blocks once the
    socket buffer is full: bound it, and let keepalive notice a silent peer."""
    import struct

    from solver.distributed.node import keepalive

    keepalive(fd)
    with socket.socket(fileno=os.dup(fd)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))


class _Worker:
    def __init__(self, slot: str, job: Any) -> None:
        self.slot = slot
        self.job = job  # the dispy job running node.serve
        self.conn: Connection | None = None
        self.dead = ""  # why it is gone, once it is
        self.seq = 0
        self.replies: dict[int, tuple[bool, Any]] = {}

    def fail(self, why: str) -> None:
        if not self.dead:
            self.dead = why
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass


class _Request:
    """One request to one worker; replies arrive in order on the worker's connection."""

    def __init__(self, ex: DispyExecutor, worker: _Worker, seq: int) -> None:
        self.node = worker.slot
        self._ex = ex
        self._w = worker
        self._seq = seq

    def wait(self, timeout: float) -> bool:
        w = self._w
        deadline = time.monotonic() + timeout
        while self._seq not in w.replies and not w.dead:
            left = deadline - time.monotonic()
            try:
                ready = w.conn.poll(max(0.0, min(left, 0.5)))
                if ready:
                    seq, ok, value = w.conn.recv()
                    w.replies[seq] = (ok, value)
                    continue
            except (EOFError, OSError) as exc:
                w.fail(f"connection to the worker lost ({exc or type(exc).__name__})")
                break
            self._ex.check_worker(w)
            if left <= 0:
                return False
        return True

    def outcome(self) -> Any:
        reply = self._w.replies.pop(self._seq, None)
        if reply is None:
            raise NodeLost(self.node, self._w.dead or "no reply")
        ok, value = reply
        if not ok:
            raise ClusterFailed(f"a job failed on node {machine(self.node)}: {value}")
        return value


class _Lost:
    def __init__(self, node: str, why: str) -> None:
        self.node = node
        self._why = why

    def wait(self, timeout: float) -> bool:
        return True

    def outcome(self) -> Any:
        raise NodeLost(self.node, self._why)


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
        client_port: int = 9702,
        want_nodes: int = 1,
        ready_timeout: float = 60.0,
        idle_s: float = 900.0,
        log=lambda msg: None,
    ) -> None:
        from solver import dispy_compat

        dispy_compat.apply()
        import dispy

        self._dispy = dispy
        self._scheduler = scheduler
        self._client_port = client_port
        self._log = log
        self._workers: dict[str, _Worker] = {}
        self._last_health = 0.0
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
        self._ready = 0.0
        try:
            node_cpus = self._wait_nodes(want_nodes, ready_timeout)
            self._start_workers(host, node_cpus, idle_s, ready_timeout)
        except BaseException:
            self.close()
            raise

    # -- start-up ------------------------------------------------------------------------------
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
            raise ClusterFailed(
                f"no node took the computation within {timeout:.0f} s (scheduler {self._scheduler})"
            )
        self._log(f"only {len(seen)} of {want} nodes ready after {timeout:.0f} s; going on")
        return seen

    def _start_workers(self, host: str, node_cpus: dict[str, int], idle_s: float, timeout: float):
        send_timeout_s = 120
        authkey = secrets.token_bytes(32)
        slots = [f"{n}#{k}" if k else n for n, c in sorted(node_cpus.items()) for k in range(c)]
        listener = Listener((host, 0), backlog=max(16, len(slots)), authkey=authkey)
        conns: dict[str, Connection] = {}
        stop = threading.Event()

        def accept() -> None:  # the HMAC challenge happens inside accept()
            while not stop.is_set():
                try:
                    conn = listener.accept()
                    kind, slot = conn.recv()
                except Exception:  # noqa: BLE001 -- a peer that failed the challenge, or our wake-up
                    continue
                if kind == "hello" and slot in self._workers:
                    conns[slot] = conn

        for slot in slots:
            job = self.cluster.submit_node(
                machine(slot), "serve", "-", 0, (listener.address, authkey, slot, idle_s)
            )
            if job is None:
                self._log(f"node {machine(slot)} refused a worker; leaving it out")
                continue
            self._workers[slot] = _Worker(slot, job)
        t = threading.Thread(target=accept, daemon=True)
        t.start()
        deadline = time.monotonic() + timeout
        while len(conns) < len(self._workers) and time.monotonic() < deadline:
            for w in self._workers.values():
                if w.slot not in conns and w.job.finish.is_set():
                    w.fail(self._job_end(w.job))
            if all(w.dead or w.slot in conns for w in self._workers.values()):
                break
            t.join(0.1)
        stop.set()
        with socket.create_connection(listener.address, timeout=3):  # wakes accept() up
            pass
        t.join(5)
        listener.close()
        for w in self._workers.values():
            w.conn = conns.get(w.slot)
            if w.conn is not None:
                _bound_sends(w.conn.fileno(), send_timeout_s)
            if w.conn is None:
                w.fail(w.dead or f"worker did not connect back within {timeout:.0f} s")
                self._log(f"worker {w.slot}: {w.dead}")
        if not self.nodes():
            raise ClusterFailed(
                "no worker could connect back to this client "
                f"({next((w.dead for w in self._workers.values()), 'no nodes')})"
            )

    def _job_end(self, job: Any) -> str:
        status = {
            self._dispy.DispyJob.Abandoned: "abandoned (node gone)",
            self._dispy.DispyJob.Cancelled: "cancelled",
            self._dispy.DispyJob.Terminated: "terminated",
            self._dispy.DispyJob.Finished: "ended",
        }.get(job.status, f"status {job.status}")
        detail = (job.exception or "").strip().splitlines()
        return f"worker job {status}" + (f": {detail[-1]}" if detail else "")

    # -- the Executor protocol ------------------------------------------------------------------
    def nodes(self) -> dict[str, int]:
        return {slot: 1 for slot, w in self._workers.items() if not w.dead}

    def check_worker(self, w: _Worker) -> None:
        """Mark a worker dead when its dispy job ended (node lost: Abandoned)."""
        if not w.dead and w.job.finish.is_set():
            w.fail(self._job_end(w.job))

    def submit(self, node: str, op: str, solve_id: str, block_id: int, payload: Any):
        w = self._workers.get(node)
        if w is None or w.dead:
            return _Lost(node, w.dead if w else "unknown worker")
        w.seq += 1
        try:
            w.conn.send((w.seq, op, solve_id, block_id, payload))
        except (OSError, ValueError) as exc:
            w.fail(f"cannot send to the worker ({exc})")
            return _Lost(node, w.dead)
        return _Request(self, w, w.seq)

    def forget(self, node: str) -> None:
        w = self._workers.get(node)
        if w is not None:
            w.fail("forgotten by the driver")

    def health(self) -> None:
        """The scheduler must still accept connections on its client port (asked at most every
        few seconds: each probe is a line in the scheduler's log)."""
        if time.monotonic() - self._last_health < HEALTH_EVERY_S:
            return
        self._last_health = time.monotonic()
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
        """Hang up on the workers (they end), then close the computation (nodes delete its
        files). Bounded: a gone scheduler must not keep the client from exiting."""
        for w in self._workers.values():
            if w.conn is not None and not w.dead:
                try:
                    w.conn.send(None)
                except (OSError, ValueError):
                    pass
            w.fail("closed")

        def _close() -> None:
            try:
                self.cluster.close(timeout=5, terminate=True)
                self.cluster.shutdown()
            except Exception:  # noqa: BLE001 -- best effort; the process exits next
                pass

        t = threading.Thread(target=_close, daemon=True)
        t.start()
        t.join(timeout)
