"""The ways sorctl reaches Docker engines: the local one (the environment's), and other
machines' engines named by `--host` (sorctl.cluster.hosts parses those)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker

from sorctl.cluster.hosts import HostSpec
from sorctl.errors import EngineError, InputError


def connect() -> docker.DockerClient:
    """A pinged Docker SDK client, or EngineError naming why no engine answers."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no socket, no permission, engine down: all one message
        raise EngineError(f"no Docker engine answers: {exc}") from None
    return client


def try_connect() -> docker.DockerClient | None:
    """connect(), or None when no engine answers (then there is no cluster to use)."""
    try:
        return connect()
    except EngineError:
        return None


@contextmanager
def engine() -> Iterator[docker.DockerClient]:
    """connect(), closed again at the end of the block."""
    client = connect()
    try:
        yield client
    finally:
        client.close()


# ---- other machines' engines (`--host`) ----


@dataclass(frozen=True)
class TLSFiles:
    """The Docker CLI's TLS client files: --tlscacert, --tlscert, --tlskey."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def resolve(
        cls, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
    ) -> TLSFiles | None:
        """Flags first, then $DOCKER_CERT_PATH/{ca,cert,key}.pem (the Docker CLI's convention);
        None when neither is given."""
        base = os.environ.get("DOCKER_CERT_PATH")
        if not (ca or cert or key or base):
            return None
        root = Path(base) if base else Path.home() / ".docker"
        files = cls(ca or root / "ca.pem", cert or root / "cert.pem", key or root / "key.pem")
        for flag, path in (("--tlscacert", files.ca), ("--tlscert", files.cert),
                           ("--tlskey", files.key)):  # fmt: skip
            if not path.is_file():
                raise InputError(f"{flag} {path}: no such file")
        return files

    def paths(self) -> list[str]:
        return [str(self.ca.resolve()), str(self.cert.resolve()), str(self.key.resolve())]

    def config(self) -> docker.tls.TLSConfig:
        return docker.tls.TLSConfig(
            client_cert=(str(self.cert), str(self.key)), ca_cert=str(self.ca), verify=True
        )


def connect_host(
    spec: HostSpec,
    tls: TLSFiles | None = None,
    warn: Callable[[str], None] | None = None,
    timeout: float = 60,
) -> docker.DockerClient:
    """A pinged client for one `--host`, or EngineError naming the host and the cause.
    One client per engine per thread: a client is a requests session, not thread-safe.
    timeout: seconds each request may take (connecting included)."""
    base_url, tls_config = spec.endpoint, None
    if spec.kind == "context":
        ctx = docker.ContextAPI.get_context(spec.endpoint)
        if ctx is None:
            raise EngineError(f"host {spec.label}: no docker context of that name")
        base_url, tls_config = ctx.Host, ctx.TLSConfig
    elif spec.kind == "tls":
        if tls is None:
            raise InputError(
                f"host {spec.label}: TLS needs --tlscacert/--tlscert/--tlskey or DOCKER_CERT_PATH"
            )
        tls_config = tls.config()
    elif spec.kind == "tcp" and warn:
        warn(
            f"host {spec.label}: plain TCP, unauthenticated: anyone who reaches it runs the engine"
        )
    try:
        # version pinned at first so that nothing is sent before trust_env is off (below)
        client = docker.DockerClient(
            base_url=base_url, tls=tls_config or False, version=_FIRST_API, timeout=timeout
        )
        # requests lets REQUESTS_CA_BUNDLE replace the session's CA (psf/requests#3829): the
        # engine's own CA must win.
        client.api.trust_env = False
        client.api._version = client.api._retrieve_server_version()  # as version="auto" does
        client.ping()
    except Exception as exc:  # every way of not getting through is one line naming the host
        raise EngineError(f"host {spec.label}: {why(exc)}") from None
    return client


# The API version of the first request (`GET /version`, which every engine answers).
_FIRST_API = "1.24"


def why(exc: BaseException) -> str:
    """The one-line cause of a failed connection."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(str(x) for x in chain)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "TLS verification failed (the host's certificate is not signed by --tlscacert)"
    if "SSLV3_ALERT" in text or "bad certificate" in text or "unknown ca" in text:
        return "TLS refused by the engine (it does not accept this client certificate)"
    if "Authentication failed" in text or "No authentication methods" in text:
        return "ssh: authentication failed (a key in ssh-agent, ~/.ssh or ~/.ssh/config?)"
    if "not found in known_hosts" in text:
        return "ssh: the host key is not in ~/.ssh/known_hosts (ssh to it once to check it)"
    if "dial-stdio" in text or "command not found" in text:
        return "ssh works but the host has no docker CLI (`docker system dial-stdio`)"
    # paramiko says "Unable to connect to port N on HOST" when every address refused it
    if "Connection refused" in text or "ConnectionRefused" in text or "Unable to connect" in text:
        return "connection refused (no Docker engine or sshd listens there)"
    if "timed out" in text or "Timeout" in text:
        return "no answer (timed out): host down, or a firewall drops the port"
    if "No route to host" in text or "Name or service not known" in text:
        return "unreachable: " + ("no route to host" if "route" in text else "unknown host name")
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
