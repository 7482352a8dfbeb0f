"""The worker connections over TLS, for a cluster made with --tls.

multiprocessing.connection writes to the raw file descriptor, so it cannot run over TLS. This
keeps its message format (4-byte length, then a pickle) and its HMAC challenge, which works on
any object with send_bytes/recv_bytes. dispy's TLS model applies: the cluster's one
certificate is the CA, no host name check (the driver holds the key; workers get the
certificate only).
"""

from __future__ import annotations

import pickle
import select
import socket
import ssl
import struct
from multiprocessing.connection import answer_challenge, deliver_challenge
from typing import Any

HANDSHAKE_TIMEOUT_S = 10.0  # a peer that never finishes must not hold up the accepting thread


class TlsConnection:
    """The part of multiprocessing.connection.Connection the pool and the workers use."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._s = sock

    def fileno(self) -> int:
        return self._s.fileno()

    def send_bytes(self, data: bytes) -> None:
        self._s.sendall(struct.pack("!i", len(data)) + data)

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        (n,) = struct.unpack("!i", self._exact(4))
        if maxlength is not None and n > maxlength:
            raise OSError(f"message of {n} bytes, more than {maxlength}")
        return self._exact(n)

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._s.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def send(self, obj: Any) -> None:
        self.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def recv(self) -> Any:  # pickles only from a peer that passed the HMAC challenge
        return pickle.loads(self.recv_bytes())

    def pending(self) -> bool:
        """Decrypted bytes are waiting that select() cannot see."""
        return bool(self._s.pending())

    def poll(self, timeout: float = 0.0) -> bool:
        if self.pending():
            return True
        return bool(select.select([self._s], [], [], timeout)[0])

    def close(self) -> None:
        self._s.close()


def _challenges(conn: TlsConnection, authkey: bytes, first, then) -> None:
    """multiprocessing's HMAC challenges (typed for its own connections, they only call
    send_bytes and recv_bytes): each side proves it holds the key."""
    peer: Any = conn
    first(peer, authkey)
    then(peer, authkey)


class Listener:
    """Like multiprocessing.connection.Listener: accept() returns a connection that passed the
    TLS handshake and both HMAC challenges."""

    def __init__(self, host: str, authkey: bytes, certfile: str, keyfile: str) -> None:
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(certfile, keyfile)
        self._authkey = authkey
        self._sock = socket.create_server((host, 0), backlog=64)
        self.address: tuple[str, int] = self._sock.getsockname()

    def accept(self) -> TlsConnection:
        raw = self._sock.accept()[0]
        raw.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            sock = self._ctx.wrap_socket(raw, server_side=True)
        except BaseException:
            raw.close()
            raise
        conn = TlsConnection(sock)
        try:
            _challenges(conn, self._authkey, first=deliver_challenge, then=answer_challenge)
        except BaseException:
            conn.close()
            raise
        sock.settimeout(None)
        return conn

    def close(self) -> None:
        self._sock.close()


def connect(address: tuple[str, int], authkey: bytes, cadata: str) -> TlsConnection:
    """Client side: like multiprocessing.connection.Client, over TLS checked against `cadata`
    (the cluster certificate's PEM text)."""
    ctx = ssl.create_default_context(cadata=cadata)
    ctx.check_hostname = False
    raw = socket.create_connection(address, timeout=HANDSHAKE_TIMEOUT_S)
    sock = ctx.wrap_socket(raw)
    conn = TlsConnection(sock)
    _challenges(conn, authkey, first=answer_challenge, then=deliver_challenge)
    sock.settimeout(None)
    return conn
