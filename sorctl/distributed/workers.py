"""Direct connections from the driver to its worker processes (sorctl.distributed.node.serve).

Whoever starts the workers (dispy jobs on a cluster; plain processes in the tests) registers
each one with `expect(slot, gone)`, where `gone()` says why the worker is known dead ("" while
it may be alive: for dispy, the worker's job ended, e.g. Abandoned when its node died). Workers
connect back to `address` with `authkey` (multiprocessing.connection: length-prefixed pickled
messages behind an HMAC challenge; on a TLS cluster the same over TLS, sorctl.distributed.tls_link)
and then answer requests in order. The pool implements the driver's Executor protocol with one
slot per worker.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from sorctl.distributed import tls_link
from sorctl.distributed.executor import NodeLost
from sorctl.distributed.mesh import tune_socket
from sorctl.errors import ClusterError

SEND_TIMEOUT_S = 120  # a send to a peer that vanished without a reset must not block forever


class _Worker:
    def __init__(self, slot: str, gone: Callable[[], str]) -> None:
        self.slot = slot
        self.gone = gone
        self.conn: Connection | tls_link.TlsConnection | None = None
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

    def check(self) -> None:
        if not self.dead:
            why = self.gone()
            if why:
                self.fail(why)


class _Request:
    """One request to one worker; replies come back in order on the worker's connection."""

    def __init__(self, worker: _Worker, seq: int) -> None:
        self.node = worker.slot
        self._w = worker
        self._seq = seq

    def wait(self, timeout: float) -> bool:
        w = self._w
        deadline = time.monotonic() + timeout
        while self._seq not in w.replies and not w.dead and w.conn is not None:
            left = deadline - time.monotonic()
            try:
                if w.conn.poll(max(0.0, min(left, 0.5))):
                    seq, ok, value = w.conn.recv()
                    w.replies[seq] = (ok, value)
                    continue
            except (EOFError, OSError) as exc:
                w.fail(f"connection to the worker lost ({exc or type(exc).__name__})")
                break
            w.check()
            if left <= 0:
                return False
        return True

    def outcome(self) -> Any:
        reply = self._w.replies.pop(self._seq, None)
        if reply is None:
            raise NodeLost(self.node, self._w.dead or "no reply")
        ok, value = reply
        if not ok:
            raise ClusterError(f"a job failed on worker {self.node}: {value}")
        return value


class _Lost:
    def __init__(self, node: str, why: str) -> None:
        self.node = node
        self._why = why

    def wait(self, timeout: float) -> bool:
        return True

    def outcome(self) -> Any:
        raise NodeLost(self.node, self._why)


class WorkerPool:
    """`tls=(certfile, keyfile)`: workers connect over TLS (tls_link.connect with the
    certificate's text); otherwise with multiprocessing.connection.Client."""

    def __init__(self, host: str, tls: tuple[str, str] | None = None) -> None:
        self.authkey = secrets.token_bytes(32)
        self.tls_pem = (Path(tls[0]).read_text(), Path(tls[1]).read_text()) if tls else None
        self._listener: Listener | tls_link.Listener = (
            tls_link.Listener(host, self.authkey, *tls)
            if tls
            else Listener((host, 0), backlog=64, authkey=self.authkey)
        )
        self.address: tuple[str, int] = self._listener.address
        self._workers: dict[str, _Worker] = {}
        self._conns: dict[str, Connection | tls_link.TlsConnection] = {}
        self._stop = threading.Event()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:  # the HMAC challenge happens inside accept()
        while not self._stop.is_set():
            try:
                conn = self._listener.accept()
                kind, slot = conn.recv()
            except Exception:  # noqa: BLE001 -- a peer that failed the challenge, or our wake-up
                continue
            if kind == "hello":
                self._conns[slot] = conn

    def expect(self, slot: str, gone: Callable[[], str]) -> None:
        self._workers[slot] = _Worker(slot, gone)

    def wait_connected(self, timeout: float) -> None:
        """Until every expected worker connected back or is known gone; then stop listening."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for w in self._workers.values():
                if w.slot not in self._conns:
                    w.check()
            if all(w.dead or w.slot in self._conns for w in self._workers.values()):
                break
            self._accepter.join(0.1)
        self._stop_listening()
        for w in self._workers.values():
            w.conn = self._conns.get(w.slot)
            if w.conn is None:
                w.fail(w.dead or f"did not connect back within {timeout:.0f} s")
            elif not w.dead:
                _bound_sends(w.conn.fileno(), SEND_TIMEOUT_S)

    def _stop_listening(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            with socket.create_connection(self.address, timeout=3):  # wakes accept() up
                pass
        except OSError:
            pass
        self._accepter.join(5)
        self._listener.close()

    def failures(self) -> dict[str, str]:
        return {slot: w.dead for slot, w in self._workers.items() if w.dead}

    # -- the Executor protocol ------------------------------------------------------------------
    def nodes(self) -> dict[str, int]:
        return {slot: 1 for slot, w in self._workers.items() if not w.dead}

    def submit(self, node: str, op: str, solve_id: str, block_id: int, payload: Any):
        w = self._workers.get(node)
        if w is None or w.dead or w.conn is None:
            return _Lost(node, w.dead if w and w.dead else "unknown worker")
        w.seq += 1
        try:
            w.conn.send((w.seq, op, solve_id, block_id, payload))
        except (OSError, ValueError) as exc:
            w.fail(f"cannot send to the worker ({exc})")
            return _Lost(node, w.dead)
        return _Request(w, w.seq)

    def forget(self, node: str) -> None:
        w = self._workers.get(node)
        if w is not None:
            w.fail("forgotten by the driver")

    def health(self) -> None:
        return None

    def close(self) -> None:
        """Hang up: each worker ends when its connection closes."""
        for w in self._workers.values():
            if w.conn is not None and not w.dead:
                try:
                    w.conn.send(None)
                except (OSError, ValueError):
                    pass
            w.fail("closed")
        self._stop_listening()


def _bound_sends(fd: int, seconds: int) -> None:
    """No Nagle, keepalive, and a bound on how long a send may block (a killed container sends
    no reset, so a large send to it would wait forever once the socket buffer is full)."""
    tune_socket(fd)
    with socket.socket(fileno=os.dup(fd)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
