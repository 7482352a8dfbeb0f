"""Direct links between the workers of one solve, so a block's new values go straight to the
workers whose blocks read them instead of through the driver (one hop, no global barrier).

Each worker listens on its own port; for a wiring (an "epoch": the placement after the start or
after a node was lost) the worker with the smaller slot name connects, the other accepts. Links
are authenticated like the driver's: multiprocessing.connection's HMAC challenge with the solve's
key, over TLS with the cluster's certificate on a --tls cluster. Sends go through one thread per
peer, so two workers sending each other large halos at once never block on full socket buffers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import tempfile
import threading
import time
from multiprocessing.connection import (
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
    wait,
)
from typing import Any

from sorctl.distributed import tls_link

#: recv() result when the driver's connection has something to say (an abort)
DRIVER = object()


class _Peer:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.outbox: queue.Queue[Any] = queue.Queue()
        self.dead = False
        self.send_s = 0.0  # seconds in conn.send, only ever added to (by this peer's thread)
        self.thread = threading.Thread(target=self._send_loop, daemon=True)
        self.thread.start()

    def _send_loop(self) -> None:
        while (msg := self.outbox.get()) is not None:
            if self.dead:
                continue
            t0 = time.perf_counter()
            try:
                self.conn.send(msg)
            except (OSError, ValueError):
                self.dead = True  # the driver hears of the node's loss and rewires
            self.send_s += time.perf_counter() - t0

    def close(self) -> None:
        self.dead = True
        self.outbox.put(None)
        with contextlib.suppress(OSError):
            self.conn.close()


class Mesh:
    """One worker's links to the other workers of its solve."""

    def __init__(
        self, slot: str, host: str, authkey: bytes, cadata: str = "", keypem: str = ""
    ) -> None:
        self.slot = slot
        self._authkey = authkey
        self._cadata = cadata
        if cadata:
            self._listener: Any = _tls_listener(host, authkey, cadata, keypem)
        else:
            self._listener = Listener((host, 0), backlog=64, authkey=authkey)
        self.address: tuple[str, int] = tuple(self._listener.address)
        self._accepted: dict[tuple[int, str], Any] = {}
        self._lock = threading.Lock()
        self._peers: dict[str, _Peer] = {}
        self._send_s_gone = 0.0  # send seconds of the links of earlier wirings
        self._send_s_read = 0.0  # the total at the last take_send_s()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
                kind, slot, epoch = conn.recv()
            except Exception:  # noqa: BLE001 -- a peer that failed the challenge, or closing
                continue
            if kind == "peer":
                with self._lock:
                    self._accepted[(int(epoch), str(slot))] = conn

    def connect(self, epoch: int, peers: dict[str, tuple[str, int]], timeout: float) -> None:
        """Drop the links of earlier wirings and link to `peers` (slot -> listening address)."""
        for peer in self._peers.values():
            peer.close()
            self._send_s_gone += peer.send_s
        self._peers = {}
        for slot, address in sorted(peers.items()):
            if slot > self.slot:
                where = (str(address[0]), int(address[1]))
                conn: Any = (
                    tls_link.connect(where, self._authkey, self._cadata)
                    if self._cadata
                    else _connect(where, self._authkey, timeout)
                )
                conn.send(("peer", self.slot, epoch))
                self._peers[slot] = _Peer(conn)
        deadline = time.monotonic() + timeout
        for slot in sorted(s for s in peers if s < self.slot):
            while True:
                with self._lock:
                    conn = self._accepted.pop((epoch, slot), None)
                if conn is not None:
                    self._peers[slot] = _Peer(conn)
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {slot} did not link to {self.slot} in {timeout} s")
                time.sleep(0.005)  # the accepting thread fills _accepted; a short poll is enough
        for peer in self._peers.values():
            tune_socket(peer.conn.fileno())

    def send(self, slot: str, msg: Any) -> None:
        """Queue `msg` for `slot` (its thread sends it)."""
        self._peers[slot].outbox.put(msg)

    def take_send_s(self) -> float:
        """Seconds the sender threads spent sending since the last call. Each peer's counter
        only grows and has one writer, so reading it needs no lock (a send still under way when
        this reads counts next time)."""
        total = self._send_s_gone + sum(p.send_s for p in list(self._peers.values()))
        taken, self._send_s_read = total - self._send_s_read, total
        return max(taken, 0.0)

    def recv(self, driver: Any, timeout: float | None = None) -> Any:
        """The next message from any live peer; DRIVER when `driver` (the driver's connection)
        has a message first; None after `timeout` seconds without either."""
        live = {p.conn: p for p in self._peers.values() if not p.dead}
        # TLS connections may hold decrypted bytes that select() cannot see
        ready: list[Any] = [c for c in (*live, driver) if getattr(c, "pending", lambda: False)()]
        if not ready:
            ready = list(wait([*live, driver], timeout))
        if driver in ready:
            return DRIVER
        for conn in ready:
            try:
                return conn.recv()
            except (EOFError, OSError):
                live[conn].dead = True  # gone; the driver notices the node and rewires
        return None

    def pending(self) -> list[Any]:
        """Every message the live peers have already sent (none waited for)."""
        out: list[Any] = []
        while True:
            live = {p.conn: p for p in self._peers.values() if not p.dead}
            ready = [c for c in live if getattr(c, "pending", lambda: False)()]
            ready = ready or list(wait(list(live), 0))
            if not ready:
                return out
            for conn in ready:
                try:
                    out.append(conn.recv())
                except (EOFError, OSError):
                    live[conn].dead = True

    def close(self) -> None:
        self._closed = True
        for peer in self._peers.values():
            peer.close()
        with contextlib.suppress(OSError):
            self._listener.close()


def _connect(where: tuple[str, int], authkey: bytes, timeout: float) -> Connection:
    """multiprocessing.connection.Client, but a peer that cannot be reached fails in `timeout`
    instead of after the kernel's SYN retries (about two minutes)."""
    sock = socket.create_connection(where, timeout=timeout)
    sock.settimeout(None)
    conn = Connection(sock.detach())
    answer_challenge(conn, authkey)
    deliver_challenge(conn, authkey)
    return conn


def _tls_listener(host: str, authkey: bytes, certpem: str, keypem: str) -> tls_link.Listener:
    """ssl loads a key only from a file: write it private, load it, remove it."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, text in ((cert, certpem), (key, keypem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        return tls_link.Listener(host, authkey, cert, key)


def tune_socket(fd: int, idle: int = 10, interval: int = 5, count: int = 3) -> None:
    """TCP_NODELAY (requests and replies are small and pipelined: Nagle plus delayed ACKs would
    hold every second one ~40 ms) and keepalive (a vanished peer shows in ~idle + interval *
    count s) on a connected socket."""
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
