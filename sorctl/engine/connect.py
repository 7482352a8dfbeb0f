"""The one way sorctl reaches the Docker engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import docker

from sorctl.errors import EngineError


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
