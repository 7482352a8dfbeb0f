"""What `--host` means: a Docker endpoint, and optionally the address dispy binds there.

    ssh://user@host[:port]   the Docker SDK's ssh transport (keys and ~/.ssh/config as they are)
    tcp://host:2376          TLS (--tlscacert/--tlscert/--tlskey or DOCKER_CERT_PATH)
    tcp://host:2375          plain, unauthenticated: allowed with a warning
    NAME                     a `docker context` (its endpoint and TLS files)
    ENDPOINT=ADDRESS         any of these, with the address dispynode binds on that host
                             (otherwise found from the host's route to the scheduler)

Pure parsing: no Docker here (sorctl.engine.connect turns a HostSpec into a client).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from sorctl.errors import InputError

PLAIN_TCP_PORT = 2375
TLS_TCP_PORT = 2376
# `docker context` names: what the Docker CLI accepts.
_CONTEXT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]*$")


@dataclass(frozen=True)
class HostSpec:
    endpoint: str  # as the user typed it, minus "=ADDRESS"
    kind: str  # "ssh", "tcp", "tls" or "context"
    hostname: str  # the machine's name or address ("" for a context: read from the context)
    address: str | None = None  # the dispy address on that host, when given

    @property
    def label(self) -> str:
        """How messages name the host."""
        return self.endpoint


def parse_host(text: str, *, tls: bool = False) -> HostSpec:
    """One `--host` value. tls: TLS files were given (--tlscacert... or DOCKER_CERT_PATH), so a
    tcp:// endpoint on any port but 2375 uses TLS."""
    endpoint, sep, address = text.strip().partition("=")
    if not endpoint:
        raise InputError(f"--host {text!r}: no endpoint")
    if sep:
        try:
            address = str(ipaddress.IPv4Address(address))
        except ValueError:
            raise InputError(
                f"--host {text!r}: {address!r} after '=' is not an IPv4 address"
            ) from None
    addr = address or None
    if "://" not in endpoint:
        if not _CONTEXT_NAME.match(endpoint):
            raise InputError(
                f"--host {endpoint!r}: not ssh://USER@HOST[:PORT], tcp://HOST:PORT "
                "or the name of a docker context"
            )
        return HostSpec(endpoint, "context", "", addr)
    url = urlsplit(endpoint)
    try:
        port = url.port
    except ValueError:
        raise InputError(f"--host {endpoint!r}: bad port") from None
    if not url.hostname:
        raise InputError(f"--host {endpoint!r}: no host name")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise InputError(f"--host {endpoint!r}: a host takes no path")
    if url.scheme == "ssh":
        return HostSpec(endpoint, "ssh", url.hostname, addr)
    if url.scheme == "tcp":
        if port is None:
            raise InputError(f"--host {endpoint!r}: tcp:// needs a port (2376 for TLS)")
        kind = "tls" if port != PLAIN_TCP_PORT and (tls or port == TLS_TCP_PORT) else "tcp"
        return HostSpec(endpoint, kind, url.hostname, addr)
    raise InputError(f"--host {endpoint!r}: scheme {url.scheme!r} (want ssh:// or tcp://)")


def parse_hosts(texts: list[str], *, tls: bool = False) -> list[HostSpec]:
    """Every `--host`, in order; the same endpoint twice is an error (one node per machine)."""
    specs = [parse_host(t, tls=tls) for t in texts]
    seen: set[str] = set()
    for spec in specs:
        if spec.endpoint in seen:
            raise InputError(f"--host {spec.endpoint} is given twice")
        seen.add(spec.endpoint)
    return specs
