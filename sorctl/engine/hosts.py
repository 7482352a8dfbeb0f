"""Doing one thing on several machines' engines at once: one thread and one Docker client per
host (a client is a requests session, not thread-safe), every host's outcome kept apart so that
a host that does not answer is named while the others still get done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import docker

from sorctl.cluster.hosts import HostSpec
from sorctl.engine.connect import TLSFiles, connect_host
from sorctl.engine.fanout import parallel
from sorctl.errors import SorctlError

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    host: HostSpec
    value: T | None = None
    error: str | None = None  # one line naming the cause, when the host failed


def on_each(
    specs: list[HostSpec],
    tls: TLSFiles | None,
    work: Callable[[HostSpec, docker.DockerClient], T],
    warn: Callable[[str], None] | None = None,
    timeout: float = 60,
) -> list[Outcome[T]]:
    """work(spec, client) on every host in parallel; outcomes in the order of specs. timeout:
    for each request to a host (connect_host)."""

    def one(spec: HostSpec) -> Outcome[T]:
        try:
            client = connect_host(spec, tls, warn, timeout)
        except SorctlError as exc:
            return Outcome(spec, error=str(exc))
        try:
            return Outcome(spec, value=work(spec, client))
        except SorctlError as exc:
            return Outcome(spec, error=str(exc))
        except docker.errors.APIError as exc:
            return Outcome(spec, error=f"host {spec.label}: {exc.explanation or exc}")
        finally:
            client.close()

    return parallel(one, specs)
