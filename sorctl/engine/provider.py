"""Where a cluster lives, behind one interface (as kind has one per container runtime): up,
status, scale, logs, solve, down, for a cluster on this machine's Docker engine
(EngineProvider: the engine's labels are its state) and for one across several machines'
engines (HostsProvider: the labels on every host, and the host list kept beside the cluster's
secret). sorctl.api.Cluster is one class over them; `provider_of(name)` says which holds a name.

What differs between the two stays in the arguments that only one of them takes (a Shape's node
count on one engine; whole hosts across hosts) and in their status (one engine's containers and
networks; every host's containers and packet filter rules).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from sorctl.cluster.hosts import HostSpec
from sorctl.cluster.plan import Shape
from sorctl.engine import lifecycle, multihost, observe, solve_container
from sorctl.engine.apply import Reporter
from sorctl.engine.connect import TLSFiles, engine
from sorctl.errors import ClusterError
from sorctl.options import SolveOptions
from sorctl.solver.generated import Grid
from sorctl.solver.io import System
from sorctl.solver.npz_check import SystemFile
from sorctl.solver.result import SolveResult

Log = Callable[[str], None]
Progress = Callable[[int, float], None]  # (iteration, relative residual)
EventSink = Callable[[dict[str, Any]], None]
Lines = Iterator[tuple[str, str]]  # (container, line)


@dataclass
class ClusterStatus:
    """What `sorctl status --json` prints for a cluster on one engine."""

    name: str
    shape: dict[str, Any] | None
    connect: dict[str, Any]
    containers: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)  # with the CPUs the scheduler counts
    scheduler_cpus: int = 0
    networks: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# A cluster across hosts: every host (reachable?, its containers and rules) and the count.
HostsStatus = multihost.MultiStatus
Status = ClusterStatus | HostsStatus


@dataclass(frozen=True)
class HostChange:
    """Whole hosts added to (a node on each) and removed from a cluster across hosts."""

    add: list[HostSpec] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)  # endpoints (or host names)
    registry: str | None = None  # HOST:PORT the added hosts pull the images from


@dataclass
class Callbacks(Reporter):
    """A Reporter from plain callables: log(line) per step, ship(host, bytes) while images are
    sent, report(found, total) while the scheduler counts the nodes."""

    log: Log = print
    ship: Callable[[str, int], None] | None = None
    report: Callable[[int, int], None] | None = None

    def step(self, text: str) -> None:
        self.log(text)

    def nodes(self, found: int, total: int) -> None:
        if self.report:
            self.report(found, total)

    def sent(self, host: str, sent: int) -> None:
        if self.ship:
            self.ship(host, sent)


ShapeT = TypeVar("ShapeT")  # what `up` is asked for
ChangeT = TypeVar("ChangeT")  # what `scale` is asked for


@dataclass(frozen=True)
class HostsShape:
    """A cluster across hosts as `sorctl up --host ...` asks for it."""

    hosts: list[HostSpec]
    relays: list[HostSpec] = field(default_factory=list)
    scheduler_host: str | None = None
    cpus_per_node: int | None = None  # None: every CPU of each machine
    tls: bool = False  # dispy's own TLS
    firewall: bool = True
    registry: str | None = None  # HOST:PORT the hosts pull the images from (else sent to each)


class Provider(ABC, Generic[ShapeT, ChangeT]):
    """One place clusters live. Each method takes the cluster's name; ClusterError when the
    provider holds no cluster of that name (down: nothing removed instead). ShapeT: what `up`
    is asked for (a Shape, a HostsShape); ChangeT: what `scale` is (a node count, a
    HostChange)."""

    kind: ClassVar[str]  # "engine" or "hosts"

    @abstractmethod
    def names(self) -> list[str]:
        """Every cluster this provider holds anything of."""

    @abstractmethod
    def holds(self, name: str) -> bool:
        """Whether cluster `name` is this provider's."""

    @abstractmethod
    def running(self, name: str) -> bool:
        """Whether a solve can be sent to cluster `name`."""

    @abstractmethod
    def up(
        self, name: str, shape: ShapeT, *, timeout: float, keep_on_failure: bool,
        reporter: Reporter | None = None,
    ) -> Any:  # fmt: skip
        """Bring the cluster up and wait until the scheduler counts every node, or fail as a
        whole (what it made removed, unless keep_on_failure)."""

    @abstractmethod
    def status(self, name: str) -> Status:
        """A ClusterStatus (one engine) or a HostsStatus (across hosts); to_dict() is the
        cluster's object in `sorctl status --json`."""

    @abstractmethod
    def scale(
        self, name: str, change: ChangeT, *, timeout: float, reporter: Reporter | None = None
    ) -> Any:
        """Grow or shrink a cluster that runs, waiting until the scheduler counts the nodes it
        should; fails as a whole."""

    @abstractmethod
    def logs(
        self, name: str, target: str | None, *, follow: bool, tail: int | None,
        warn: Log | None = None,
    ) -> Lines:  # fmt: skip
        """(container, line) of every container, one role's or one container's; warn names a
        host that does not answer while the others still give."""

    @abstractmethod
    def solve(
        self, name: str, system: System | SystemFile | Grid, options: SolveOptions, *,
        checkpoint: str | os.PathLike | None, progress: Progress, on_event: EventSink,
        log: Log | None,
    ) -> SolveResult:  # fmt: skip
        """Run the solve's client container on the cluster (no feed: the API writes that)."""

    @abstractmethod
    def down(self, name: str) -> Any:
        """Everything with the cluster's labels removed, and its secret here; what was removed."""


class EngineProvider(Provider[Shape, int]):
    """Clusters on this machine's Docker engine (the environment's: DOCKER_HOST, ...)."""

    kind = "engine"

    def names(self) -> list[str]:
        with engine() as client:
            return observe.cluster_names(client)

    def find(self, name: str) -> observe.ClusterInfo | None:
        with engine() as client:
            return observe.find_cluster(client, name)

    def info(self, name: str) -> observe.ClusterInfo:
        info = self.find(name)
        if info is None:
            raise ClusterError(f"no cluster named {name!r}")
        return info

    def holds(self, name: str) -> bool:
        return self.find(name) is not None

    def running(self, name: str) -> bool:
        return _running(self.find(name))

    def up(
        self, name: str, shape: Shape, *, timeout: float, keep_on_failure: bool,
        reporter: Reporter | None = None,
    ) -> lifecycle.UpResult:  # fmt: skip
        with engine() as client:
            return lifecycle.up(client, name, shape, timeout=timeout,
                                keep_on_failure=keep_on_failure, reporter=reporter)  # fmt: skip

    def status(self, name: str) -> ClusterStatus:
        with engine() as client:
            info = observe.find_cluster(client, name)
            if info is None:
                raise ClusterError(f"no cluster named {name!r}")
            return ClusterStatus(**observe.status_dict(client, info))

    def scale(
        self, name: str, change: int, *, timeout: float, reporter: Reporter | None = None
    ) -> tuple[int, int]:
        """To `change` nodes; (before, after)."""
        with engine() as client:
            return lifecycle.scale(client, name, change, timeout=timeout, reporter=reporter)

    def logs(
        self, name: str, target: str | None, *, follow: bool, tail: int | None,
        warn: Log | None = None,
    ) -> Lines:  # fmt: skip
        picked = observe.pick_containers(self.info(name), target)
        with engine() as client:
            yield from observe.stream_logs(client, [c.name for c in picked], follow, tail)

    def solve(
        self, name: str, system: System | SystemFile | Grid, options: SolveOptions, *,
        checkpoint: str | os.PathLike | None, progress: Progress, on_event: EventSink,
        log: Log | None,
    ) -> SolveResult:  # fmt: skip
        info = self.info(name)
        if not _running(info):
            raise ClusterError(f"cluster {name!r} is not running (see `sorctl status`)")
        return solve_container.run(info, system, options, checkpoint=checkpoint,
                                   progress=progress, on_event=on_event, log=log)  # fmt: skip

    def down(self, name: str) -> dict[str, int]:
        """How many containers, networks, volumes and secret directories were removed."""
        with engine() as client:
            return lifecycle.down(client, name)


def _running(info: observe.ClusterInfo | None) -> bool:
    """A scheduler container and at least one node container run."""
    if info is None or not info.scheduler_address or not info.network:
        return False
    return any(c.state == "running" for c in info.role("scheduler")) and any(
        c.state == "running" for c in info.nodes
    )


class HostsProvider(Provider[HostsShape, HostChange]):
    """Clusters across several machines' engines (`--host`), each reached with its own client;
    tls: the Docker TLS client files for tcp:// hosts (default: those `up` used)."""

    kind = "hosts"

    def __init__(self, tls: TLSFiles | None = None) -> None:
        self.tls = tls

    def names(self) -> list[str]:
        return multihost.names()

    def holds(self, name: str) -> bool:
        return multihost.hosts_of(name) is not None

    def running(self, name: str) -> bool:
        return self.holds(name)  # a host that does not answer is named by the solve itself

    def up(
        self, name: str, shape: HostsShape, *, timeout: float, keep_on_failure: bool,
        reporter: Reporter | None = None,
    ) -> multihost.UpResult:  # fmt: skip
        """reporter.step gets a line per step, sent the image bytes on their way to a host."""
        r = reporter or Reporter()
        return multihost.up(
            name, shape.hosts, self.tls, scheduler_host=shape.scheduler_host,
            cpus_per_node=shape.cpus_per_node, tls=shape.tls, timeout=timeout,
            keep_on_failure=keep_on_failure, log=r.step, ship_progress=r.sent, report=r.nodes,
            use_firewall=shape.firewall, relays=shape.relays, registry=shape.registry,
        )  # fmt: skip

    def status(self, name: str) -> HostsStatus:
        return multihost.status(name, self.tls)

    def scale(
        self, name: str, change: HostChange, *, timeout: float, reporter: Reporter | None = None
    ) -> multihost.ScaleResult:
        """What was added and removed, and what the scheduler counts at the end."""
        r = reporter or Reporter()
        return multihost.scale(
            name, change.add, change.remove, self.tls, timeout=timeout, log=r.step,
            ship_progress=r.sent, registry=change.registry,
        )  # fmt: skip

    def logs(
        self, name: str, target: str | None, *, follow: bool, tail: int | None,
        warn: Log | None = None,
    ) -> Lines:  # fmt: skip
        return multihost.logs(name, target, follow, tail, warn, self.tls)

    def solve(
        self, name: str, system: System | SystemFile | Grid, options: SolveOptions, *,
        checkpoint: str | os.PathLike | None, progress: Progress, on_event: EventSink,
        log: Log | None,
    ) -> SolveResult:  # fmt: skip
        return multihost.solve(name, system, options, self.tls, checkpoint=checkpoint,
                               progress=progress, on_event=on_event, log=log)  # fmt: skip

    def down(self, name: str) -> tuple[dict[str, int], dict[str, str]]:
        """(host -> containers removed, host -> why it could not be cleaned)."""
        return multihost.down(name, self.tls)


TLSPaths = tuple[Path | None, Path | None, Path | None]  # --tlscacert, --tlscert, --tlskey


def provider_of(name: str, tls_files: TLSPaths = (None, None, None)) -> Provider:
    """The provider that holds cluster `name`: across hosts when its host list is kept here
    (no engine needed to know), else this machine's engine (whether or not it has the name).
    tls_files: the Docker TLS client files for the hosts (flags, else DOCKER_CERT_PATH, else
    those `up` used)."""
    found = multihost.hosts_of(name)
    if found is not None:
        return HostsProvider(multihost.tls_of(found[1], TLSFiles.resolve(*tls_files)))
    return EngineProvider()
