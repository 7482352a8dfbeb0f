"""Shims that let dispy 4.15.2 and pycos 4.12.2 run on Pythons newer than they were written for.

`apply()` installs, only where the standard library no longer has them:
- `inspect.getargspec` (gone in 3.11): dispy checks `job_status`/`cluster_status` callbacks
  with it, pycos its channel `transform`/`categorize` functions.
- `ssl.wrap_socket` (gone in 3.12): pycos wraps TLS connections with it; without it TLS
  fails silently (no nodes found).
- a `cgi` module (gone in 3.13): dispy.httpd and pycos.httpd import it at module level and
  parse form posts with `cgi.FieldStorage(...).list`.
Each shim is a no-op where the original exists. Call `apply()` before importing dispy.
"""

from __future__ import annotations

import inspect
import ssl
import sys
import types
import urllib.parse
from collections import namedtuple

ArgSpec = namedtuple("ArgSpec", "args varargs keywords defaults")


def getargspec(func):
    """The removed `inspect.getargspec`, on top of `getfullargspec`.

    Like the original it refuses keyword-only parameters; unlike it, annotations are
    allowed (dispy reads only args/varargs/keywords/defaults).
    """
    spec = inspect.getfullargspec(func)
    if spec.kwonlyargs:
        raise ValueError("Function has keyword-only parameters, use inspect.signature()")
    return ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)


def wrap_socket(
    sock,
    keyfile=None,
    certfile=None,
    server_side=False,
    cert_reqs=ssl.CERT_NONE,
    ssl_version=None,
    ca_certs=None,
    do_handshake_on_connect=True,
    suppress_ragged_eofs=True,
    ciphers=None,
):
    """The removed `ssl.wrap_socket`, on an `SSLContext`, with the same verification semantics.

    As the original: the peer is verified only as `cert_reqs` says (dispy servers: not at all;
    dispy clients: CERT_REQUIRED against `ca_certs`, its own certificate as the CA), and the
    host name is never checked. `ssl_version=None` or PROTOCOL_TLS means "negotiate"; the
    side-specific protocol is used so no deprecated constant is needed.
    """
    if server_side and not certfile:
        raise ValueError("certfile must be specified for server-side operations")
    if keyfile and not certfile:
        raise ValueError("certfile must be specified")
    if ssl_version is None or ssl_version == getattr(ssl, "PROTOCOL_TLS", None):
        ssl_version = ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT
    context = ssl.SSLContext(ssl_version)
    context.check_hostname = False  # before verify_mode: CERT_NONE needs it off
    context.verify_mode = cert_reqs
    if ca_certs:
        context.load_verify_locations(ca_certs)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    if ciphers:
        context.set_ciphers(ciphers)
    return context.wrap_socket(
        sock=sock,
        server_side=server_side,
        do_handshake_on_connect=do_handshake_on_connect,
        suppress_ragged_eofs=suppress_ragged_eofs,
    )


class MiniFieldStorage:
    """One form field: what dispy reads from `FieldStorage.list` items."""

    filename = None

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"MiniFieldStorage({self.name!r}, {self.value!r})"


class FieldStorage:
    """The part of `cgi.FieldStorage` dispy and pycos use: a url-encoded POST body read from
    `fp` (Content-Length bytes), its fields in `.list`, plus the usual look-ups."""

    def __init__(self, fp=None, headers=None, environ=None, keep_blank_values=False, **_):
        length = int((headers or {}).get("Content-Length") or 0)
        body = fp.read(length) if fp is not None and length > 0 else b""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        pairs = urllib.parse.parse_qsl(body, keep_blank_values=keep_blank_values)
        self.list = [MiniFieldStorage(name, value) for name, value in pairs]

    def keys(self) -> list[str]:
        return list(dict.fromkeys(item.name for item in self.list))

    def __contains__(self, key: str) -> bool:
        return any(item.name == key for item in self.list)

    def __getitem__(self, key: str):
        found = [item for item in self.list if item.name == key]
        if not found:
            raise KeyError(key)
        return found[0] if len(found) == 1 else found

    def getlist(self, key: str) -> list[str]:
        return [item.value for item in self.list if item.name == key]

    def getfirst(self, key: str, default=None):
        values = self.getlist(key)
        return values[0] if values else default

    def getvalue(self, key: str, default=None):
        values = self.getlist(key)
        if not values:
            return default
        return values[0] if len(values) == 1 else values


def _cgi_module() -> types.ModuleType:
    module = types.ModuleType("cgi", "sorctl's stand-in for the removed cgi module (dispy.httpd)")
    module.FieldStorage = FieldStorage  # type: ignore[attr-defined]
    module.MiniFieldStorage = MiniFieldStorage  # type: ignore[attr-defined]
    return module


def _has_cgi() -> bool:
    import importlib.util

    return importlib.util.find_spec("cgi") is not None


def apply() -> None:
    """Install the missing pieces; leave every original that exists alone. Idempotent."""
    if not hasattr(inspect, "getargspec"):
        inspect.getargspec = getargspec  # type: ignore[attr-defined]
    if not hasattr(ssl, "wrap_socket"):
        ssl.wrap_socket = wrap_socket
    if "cgi" not in sys.modules and not _has_cgi():
        sys.modules["cgi"] = _cgi_module()
