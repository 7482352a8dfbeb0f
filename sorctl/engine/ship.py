"""Images onto other machines' engines without a registry: `docker save` here, `docker load`
there, streamed over the same connection sorctl uses for that engine (ssh:// or tcp://).

An image counts as present on a host when it has the same tag and the same inputs-hash label
(the hash of everything the build put in), so a host is sent only what it lacks or has stale.
Several roles go in one saved archive: the layers they share (the base, the venv) travel once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import docker

from sorctl.cluster.hosts import HostSpec
from sorctl.engine.connect import TLSFiles, connect
from sorctl.engine.hosts import Outcome, on_each
from sorctl.engine.images import image_ref, require_images
from sorctl.errors import EngineError
from sorctl.names import LABEL_INPUTS_HASH

# progress(host, bytes sent so far): the archive's size is not known before it is made (shared
# layers count once), so the caller shows a running count.
Progress = Callable[[str, int], None]
CHUNK = 1 << 20
# What a machine of a multi-host cluster runs: the daemons, and the client of a solve.
HOST_ROLES = ("scheduler", "node", "relay", "client")


@dataclass(frozen=True)
class Shipped:
    host: str
    refs: list[str]  # what was sent (empty: the host had all of them)
    bytes: int
    seconds: float
    how: str = (
        "sent"  # sent (save here, load there), pulled (by the host) or pushed (to a registry)
    )


def _hash(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return (client.images.get(ref).labels or {}).get(LABEL_INPUTS_HASH)
    except docker.errors.ImageNotFound:
        return None


def missing(
    local: docker.DockerClient, remote: docker.DockerClient, roles: Iterable[str]
) -> list[str]:
    """The refs of `roles` that the remote engine lacks or has with other inputs."""
    refs = [image_ref(role) for role in roles]
    return [ref for ref in refs if _hash(remote, ref) != _hash(local, ref)]


def ship(
    local: docker.DockerClient,
    remote: docker.DockerClient,
    host: str,
    roles: Iterable[str],
    progress: Progress | None = None,
) -> Shipped:
    """Sends the images of `roles` the host lacks (save here, load there), in one archive."""
    roles = list(roles)
    require_images(local, roles)
    refs = missing(local, remote, roles)
    if not refs:
        return Shipped(host, [], 0, 0.0)
    sent = 0
    t0 = time.monotonic()

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        # GET /images/get?names=...: one archive for all refs, shared layers once
        response = local.api._get(
            local.api._url("/images/get"), params={"names": refs}, stream=True
        )
        local.api._raise_for_status(response)
        for chunk in response.iter_content(CHUNK):
            sent += len(chunk)
            if progress:
                progress(host, sent)
            yield chunk

    try:
        for line in remote.api.load_image(chunks()):
            if "error" in line:
                raise EngineError(f"host {host}: loading the images failed: {line['error']}")
    except docker.errors.APIError as exc:
        raise EngineError(f"host {host}: loading the images failed: {exc.explanation}") from None
    still = missing(local, remote, roles)
    if still:
        raise EngineError(f"host {host}: after loading, still missing {', '.join(still)}")
    return Shipped(host, refs, sent, time.monotonic() - t0)


def push(
    specs: list[HostSpec],
    tls: TLSFiles | None,
    roles: Iterable[str],
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Outcome[Shipped]]:
    """ship() to every host in parallel (each thread with its own client of this engine)."""
    roles = list(roles)
    local = connect()
    try:
        require_images(local, roles)
    finally:
        local.close()

    def one(spec: HostSpec, remote: docker.DockerClient) -> Shipped:
        here = connect()
        try:
            return ship(here, remote, spec.label, roles, progress)
        finally:
            here.close()

    return on_each(specs, tls, one, warn)
