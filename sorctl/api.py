"""sorctl from Python: `solve(A, b, ...)` in the shape of scipy.sparse.linalg.cg, `Cluster` for
a dispy cluster (up, status, scale, logs, solve, down) on this machine's Docker engine or across
several machines' engines (the providers of sorctl.engine.provider), and the images.

    import sorctl
    res = sorctl.solve(A, b, rtol=1e-8)                       # local
    with sorctl.Cluster.up("lab", nodes=4, relay=True) as c:  # or sorctl.Cluster("lab")
        res = c.solve(A, b, rtol=1e-8, method="sor")
        print(c.status().nodes)
    c = sorctl.Cluster.up("far", hosts=["ssh://me@lab1", "ssh://me@lab2"])  # across hosts

Every solve, local or on any cluster, writes its feed (sorctl.solvefeed), which the dashboard
follows.

Errors are sorctl.InputError (bad arrays or options), sorctl.ClusterError (no engine, no such
cluster, a cluster that fails) and sorctl.ImageError; each message is one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sorctl.cluster.hosts import parse_hosts
from sorctl.cluster.machine import Check
from sorctl.cluster.plan import PlanError, Shape, check_nodes, validate
from sorctl.engine import images, multihost, observe, ship
from sorctl.engine import registry as registries
from sorctl.engine.apply import Reporter
from sorctl.engine.connect import TLSFiles, engine, try_connect
from sorctl.engine.images import BuildWatch, Built, ImageRow, Step
from sorctl.engine.lifecycle import READY_TIMEOUT_S
from sorctl.engine.provider import (
    Callbacks,
    ClusterStatus,
    EngineProvider,
    HostChange,
    HostsProvider,
    HostsShape,
    HostsStatus,
    Provider,
    Status,
    TLSPaths,
    provider_of,
)
from sorctl.engine.ship import Shipped
from sorctl.errors import ClusterError, InputError
from sorctl.names import DEFAULT_CLUSTER
from sorctl.options import DEFAULTS, SolveOptions
from sorctl.solvefeed import FeedWriter
from sorctl.solver import io, local
from sorctl.solver.generated import Grid
from sorctl.solver.io import System
from sorctl.solver.npz_check import SystemFile
from sorctl.solver.peak_memory import note_host_peak
from sorctl.solver.result import SolveResult

# what a cluster solve takes: arrays checked in memory, or an .npz checked in windows and sent as
# it is (sorctl.solver.npz_check), which the host never holds whole
SystemSource = System | SystemFile | Grid  # a grid: the nodes make its rows
Callback = Callable[[int, float], None]  # callback(iteration, relative residual) per check
EventSink = Callable[[dict[str, Any]], None]


def solve(
    A,
    b,
    *,
    x0=None,
    omega: float | None = DEFAULTS.omega,
    rtol: float = DEFAULTS.rtol,
    atol: float = DEFAULTS.atol,
    maxiter: int = DEFAULTS.maxiter,
    method: str = DEFAULTS.method,
    callback: Callback | None = None,
    cluster: Cluster | str | None = None,
    allow_nonsymmetric: bool = False,
    **options: Any,
) -> SolveResult:
    """Solve A x = b (A symmetric positive definite: scipy.sparse or a 2-D array).

    Locally by default; on a running cluster with `cluster=` (a Cluster or its name). Stops when
    ||b - A x|| <= max(rtol ||b||, atol), after maxiter sweeps, on divergence, or on Ctrl-C
    (reason 'interrupted'). omega=None estimates it. callback(iteration, relative_residual)
    after every residual check. Further keyword options are SolveOptions fields
    (check_every; on a cluster inner_sweeps, blocks, ...). The arrays are not changed.
    """
    opts = DEFAULTS.with_(
        omega=omega, rtol=rtol, atol=atol, maxiter=maxiter, method=method, **options
    )
    system = io.system_from_arrays(A, b, x0, allow_nonsymmetric=allow_nonsymmetric)
    if cluster is not None:
        target = cluster if isinstance(cluster, Cluster) else Cluster(cluster)
        return target.solve_system(system, opts, callback=callback)
    return solve_local(system, opts, callback=callback)


def solve_local(
    system: System, options: SolveOptions, *, callback: Callback | None = None
) -> SolveResult:
    """Solve an already validated System (sorctl.solver.io) on this machine."""
    with _feed(system, options, "local") as feed:
        result = local.solve(
            system.A, system.b, options, x0=system.x0, callback=_tee(feed.progress, callback)
        )
        note_host_peak(result.extra)
        feed.done(result.to_report())
    return result


def _feed(system: SystemSource, options: SolveOptions, backend: str, cluster: str | None = None):
    """The solve's feed, which `sorctl dashboard` follows (sorctl.solvefeed)."""
    return FeedWriter(backend=backend, cluster=cluster, n=system.n, nnz=system.nnz,
                      options=asdict(options))  # fmt: skip


def _tee(first: Callable[..., None], second: Callable[..., None] | None) -> Callable[..., None]:
    def both(*args: Any) -> None:
        first(*args)
        if second is not None:
            second(*args)

    return both


__all__ = [
    "READY_TIMEOUT_S",
    "BuildWatch",
    "Built",
    "Cluster",
    "ClusterStatus",
    "HostsCluster",
    "HostsStatus",
    "ImageRow",
    "Reporter",
    "Step",
    "build_images",
    "check_scale",
    "cluster_for_solve",
    "clusters",
    "list_images",
    "push_images",
    "remove_images",
    "scale_hosts",
    "solve",
    "solve_local",
]


def build_images(
    roles: list[str] | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
    registry: str | None = None,
    watch: BuildWatch | None = None,
    verbose: bool = False,
) -> list[Built]:
    """Build the role images whose inputs changed (`roles`: all by default). registry:
    HOST:PORT to take the base image from when it has it (python:3.11-slim or
    sorctl-base:bookworm there), else the base is found as without one. `watch` hears each
    role's steps; `verbose` sends every line Docker prints to `log` as well."""
    for role in roles or []:
        if role not in images.ROLES:
            raise InputError(f"unknown role {role!r} (roles: {', '.join(images.ROLES)})")
    address = registries.parse_address(registry) if registry else None
    with engine() as client:
        base = registries.choose_base(client, address, log) if address else None
        return images.build(
            roles or None,
            force=force,
            log=log,
            client=client,
            base=base,
            watch=watch,
            verbose=verbose,
        )


def list_images() -> list[ImageRow]:
    """Every sorctl image the engine has (any version), and this version's missing ones."""
    with engine() as client:
        return images.list_images(client)


def remove_images(
    *, all_versions: bool = False, base: bool = False, log: Callable[[str], None] = print
) -> list[str]:
    """Remove this version's role images (every version's, and the offline base, if asked)."""
    with engine() as client:
        return images.remove_images(client, all_versions=all_versions, base=base, log=log)


def push_images(
    hosts: list[str],
    *,
    roles: list[str] | None = None,
    tls_files: tuple[Path | None, Path | None, Path | None] = (None, None, None),
    progress: Callable[[str, int], None] | None = None,
    warn: Callable[[str], None] = print,
    registry: str | None = None,
) -> list[Shipped]:
    """Send this version's images to other machines' engines (`--host` endpoints) that lack
    them, over the same connection (no registry), and/or push them to a registry (HOST:PORT,
    as HOST:PORT/sorctl-ROLE:VERSION). Raises ClusterError naming every host that failed,
    after the others are done; tls_files: (CA, certificate, key) or DOCKER_CERT_PATH."""
    for role in roles or []:
        if role not in images.ROLES:
            raise InputError(f"unknown role {role!r} (roles: {', '.join(images.ROLES)})")
    if not hosts and not registry:
        raise InputError("images push: give --host ENDPOINT (repeatable) or --registry HOST:PORT")
    pushed = []
    if registry:
        address = registries.parse_address(registry)
        warn(registries.describe(address))
        with engine() as client:
            pushed.append(registries.push(client, address, roles or list(ship.HOST_ROLES),
                                          progress))  # fmt: skip
    if not hosts:
        return pushed
    tls = TLSFiles.resolve(*tls_files)
    specs = parse_hosts(hosts, tls=tls is not None)
    outcomes = ship.push(specs, tls, roles or list(ship.HOST_ROLES), progress, warn)
    failed = [o.error for o in outcomes if o.error]
    if failed:
        raise ClusterError("; ".join(e for e in failed if e))
    return pushed + [o.value for o in outcomes if o.value is not None]


def clusters() -> list[str]:
    """The names of every sorctl cluster the engine has anything of."""
    return EngineProvider().names()


def cluster_for_solve(name: str | None) -> Cluster | None:
    """The cluster a solve should use: `name` if given (ClusterError unless it runs); else the
    one running cluster on the engine, None when none runs (or no engine answers), and a
    ClusterError naming them when several run."""
    if name is not None and is_multihost(name):
        return Cluster(name)
    client = try_connect()
    if client is None:
        if name is not None:
            raise ClusterError(f"no cluster named {name!r} is running (no Docker engine answers)")
        return None
    client.close()
    local = EngineProvider()
    names = [name] if name is not None else local.names()
    running = [n for n in names if local.running(n)]
    if name is not None and not running:
        raise ClusterError(
            f"no cluster named {name!r} is running (sorctl up --name {name}, or --local)"
        )
    if len(running) > 1:
        raise ClusterError(
            f"{len(running)} clusters are running ({', '.join(running)}): "
            "choose one with --cluster NAME, or --local"
        )
    return Cluster(running[0]) if running else None


def _check(rule: Callable[..., None], *args: Any) -> None:
    """A planning rule's PlanError as the library's InputError."""
    try:
        rule(*args)
    except PlanError as exc:
        raise InputError(str(exc)) from None


def check_scale(nodes: int) -> None:
    """InputError unless `nodes` can be a cluster's node count."""
    _check(check_nodes, nodes)


class Cluster:
    """A sorctl cluster, on this machine's Docker engine or across several machines' engines
    (`hosts=`): the same methods on either, through its provider (sorctl.engine.provider).

    `Cluster(name)` attaches to one that exists, wherever it is; `Cluster.up(name, ...)` brings
    one up and, used as a context manager, takes it down again at the end of the block.
    tls_files: (CA, certificate, key) of the hosts' Docker TLS endpoints (default: the flags'
    environment, DOCKER_CERT_PATH, else the files `up` used).
    """

    def __init__(
        self, name: str = DEFAULT_CLUSTER, *, must_exist: bool = True,
        tls_files: TLSPaths = (None, None, None),
    ) -> None:  # fmt: skip
        self.name = name
        self.provider: Provider[Any, Any] = provider_of(name, tls_files)
        self.created = False  # True when Cluster.up made it (then `with` takes it down)
        self.ready_s = 0.0
        self.up_result: multihost.UpResult | None = None  # across hosts: the plan, images sent
        if must_exist and not self.provider.holds(name):
            raise ClusterError(f"no cluster named {name!r} (sorctl up --name {name})")

    def __repr__(self) -> str:
        return f"Cluster({self.name!r})"

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.created:
            self.down()

    @property
    def across_hosts(self) -> bool:
        """Whether the cluster runs across several machines' engines (`up --host`)."""
        return isinstance(self.provider, HostsProvider)

    @classmethod
    def up(
        cls,
        name: str = DEFAULT_CLUSTER,
        *,
        nodes: int | None = None,
        relay: bool = Shape.relay,
        subnets: int | None = None,
        cpus_per_node: int | None = None,
        tls: bool = Shape.tls,
        timeout: float = READY_TIMEOUT_S,
        keep_on_failure: bool = False,
        reporter: Reporter | None = None,
        hosts: list[str] | None = None,
        relay_hosts: list[str] | tuple[str, ...] = (),
        scheduler_host: str | None = None,
        firewall: bool = True,
        tls_files: TLSPaths = (None, None, None),
        log: Callable[[str], None] = print,
        ship_progress: Callable[[str, int], None] | None = None,
        registry: str | None = None,
    ) -> Cluster:
        """Bring cluster `name` up and wait until the scheduler counts every node's CPUs. On
        failure or Ctrl-C everything this call created is removed (unless keep_on_failure).

        On this machine's engine: nodes, relay, subnets, cpus_per_node (default Shape's), tls;
        the same shape already up is attached as it is, another shape is a ClusterError.
        With hosts (Docker endpoints, ENDPOINT[=ADDRESS]): one node per host and the scheduler
        on the first (or scheduler_host); relay_hosts (with relay) run a dispynetrelay and no
        node; cpus_per_node default: every CPU of each machine; firewall: dispy's ports open to
        the members only; the reporter's step gets a line per step and sent(host, bytes) the
        images on their way (default: log and ship_progress); registry: HOST:PORT every host
        pulls the images from (pushed there first with push_images) instead of their being sent
        over each connection; `up_result` keeps the plan.
        """
        if hosts:
            if nodes is not None or subnets is not None:
                raise InputError("nodes and subnets are for one engine: with hosts, one node "
                                 "per host and the hosts make the subnets")  # fmt: skip
            files = TLSFiles.resolve(*tls_files)
            specs = HostsShape(
                parse_hosts(hosts, tls=files is not None),
                parse_hosts(list(relay_hosts) if relay else [], tls=files is not None),
                scheduler_host, cpus_per_node, tls, firewall,
                registries.parse_address(registry) if registry else None,
            )  # fmt: skip
            res = HostsProvider(files).up(
                name, specs, timeout=timeout, keep_on_failure=keep_on_failure,
                reporter=reporter or Callbacks(log, ship_progress),
            )  # fmt: skip
            cluster = cls(name, tls_files=tls_files)
            cluster.created, cluster.ready_s, cluster.up_result = True, res.ready_s, res
            return cluster
        if relay_hosts or registry:
            raise InputError("relay_hosts and registry go with hosts (a cluster across machines)")
        shape = Shape(nodes if nodes is not None else Shape.nodes, relay,
                      subnets if subnets is not None else Shape.subnets,
                      cpus_per_node if cpus_per_node is not None else Shape.cpus_per_node,
                      tls)  # fmt: skip
        _check(validate, name, shape)  # bad options fail before anything talks to the engine
        result = EngineProvider().up(
            name, shape, timeout=timeout, keep_on_failure=keep_on_failure, reporter=reporter
        )
        cluster = cls(name)
        cluster.created, cluster.ready_s = result.created, result.seconds
        return cluster

    def _engine(self, what: str) -> EngineProvider:
        if not isinstance(self.provider, EngineProvider):
            raise InputError(f"cluster {self.name!r} runs across hosts: {what}")
        return self.provider

    def info(self) -> observe.ClusterInfo:
        """The cluster as the engine has it now (ClusterError when it is gone; one engine's
        only: a cluster across hosts has its hosts in status())."""
        return self._engine("its hosts are in status()").info(self.name)

    def status(self) -> Status:
        """On one engine a ClusterStatus (containers, networks, the nodes and CPUs the scheduler
        counts, how to connect); across hosts a HostsStatus (every host: reachable?, its
        containers and packet filter rules; what the scheduler counts). Each has to_dict(),
        the cluster's object in `sorctl status --json`."""
        return self.provider.status(self.name)

    def scale(
        self,
        nodes: int | None = None,
        *,
        add: list[str] | tuple[str, ...] = (),
        remove: list[str] | tuple[str, ...] = (),
        timeout: float = READY_TIMEOUT_S,
        reporter: Reporter | None = None,
        log: Callable[[str], None] = print,
        ship_progress: Callable[[str, int], None] | None = None,
        registry: str | None = None,
    ) -> Any:
        """On one engine: grow (waiting until the scheduler counts the new nodes) or shrink to
        `nodes` nodes; returns (before, after). Across hosts: add hosts (ENDPOINT[=ADDRESS], a
        node on each) and remove hosts (their endpoints); returns a ScaleResult (what was added
        and removed, what the scheduler counts; registry: HOST:PORT the added hosts pull the
        images from). Either fails as a whole."""
        if isinstance(self.provider, HostsProvider):
            if nodes is not None:
                raise InputError(
                    f"cluster {self.name!r} runs one node per --host machine: --nodes does not "
                    "apply; use --add-host ENDPOINT[=ADDRESS] or --remove-host ENDPOINT"
                )
            address = registries.parse_address(registry) if registry else None
            change = HostChange(parse_hosts(list(add), tls=self.provider.tls is not None),
                                list(remove), address)  # fmt: skip
            return self.provider.scale(self.name, change, timeout=timeout,
                                       reporter=Callbacks(log, ship_progress))  # fmt: skip
        if add or remove:
            raise InputError(
                f"--add-host/--remove-host are for a cluster made with --host, and {self.name!r} "
                "is none (one engine: --nodes N)"
            )
        if nodes is None:
            raise InputError("scale: give --nodes N (or --add-host/--remove-host for --host "
                             "clusters)")  # fmt: skip
        check_scale(nodes)  # bad requests fail before anything talks to the engine
        if not self.provider.holds(self.name):
            raise ClusterError(f"no cluster named {self.name!r} (sorctl up --name {self.name})")
        return self._engine("").scale(self.name, nodes, timeout=timeout, reporter=reporter)

    def logs(
        self, target: str | None = None, *, follow: bool = False, tail: int | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> Iterator[tuple[str, str]]:  # fmt: skip
        """(container name, line) of every container, or of one role (scheduler, node, relay,
        router) or container (`node-2` or its full name); with follow, until they stop. Across
        hosts, a host that does not answer is named through warn and the others still give."""
        return self.provider.logs(self.name, target, follow=follow, tail=tail, warn=warn)

    def solve(
        self,
        A,
        b,
        *,
        x0=None,
        callback: Callback | None = None,
        checkpoint: str | os.PathLike | None = None,
        on_event: EventSink | None = None,
        allow_nonsymmetric: bool = False,
        **options: Any,
    ) -> SolveResult:
        """sorctl.solve on this cluster: same options and result, plus the distributed fields
        (nodes, blocks, events, ...). `checkpoint`: a file that keeps the last gathered x.
        `on_event(dict)` gets the driver's events as they happen, and per round of iterations a
        `round` event with each worker's sweep_s, wait_s, residual_s, sent_bytes and send_s."""
        system = io.system_from_arrays(A, b, x0, allow_nonsymmetric=allow_nonsymmetric)
        return self.solve_system(
            system,
            DEFAULTS.with_(**options),
            callback=callback,
            checkpoint=checkpoint,
            on_event=on_event,
        )

    def solve_system(
        self,
        system: SystemSource,
        options: SolveOptions,
        *,
        callback: Callback | None = None,
        checkpoint: str | os.PathLike | None = None,
        on_event: EventSink | None = None,
        log: Callable[[str], None] | None = None,
    ) -> SolveResult:
        """Solve an already validated System (sorctl.solver.io), a SystemFile
        (sorctl.solver.npz_check), or a Grid whose rows the nodes make (sorctl.solver.generated)
        on this cluster; its feed shows it on the dashboard, as every solve's does."""
        options = options.for_cluster()
        with _feed(system, options, f"cluster:{self.name}", self.name) as feed:
            result = self.provider.solve(
                self.name,
                system,
                options,
                checkpoint=checkpoint,
                progress=_tee(feed.progress, callback),
                on_event=_tee(feed.event, on_event),
                log=log,
            )
            note_host_peak(result.extra)
            feed.done(result.to_report())
        return result

    def down(self) -> Any:
        """Remove everything with the cluster's labels, and its secret here. One engine: how
        many containers, networks, volumes and secret directories were removed (a dict).
        Across hosts: (host -> containers removed, host -> why it could not be cleaned); the
        host list and secret stay while a host could not be cleaned."""
        return self.provider.down(self.name)


# ---- a cluster across several machines' Docker engines (`sorctl up --host ...`)


def up_hosts(
    name: str,
    hosts: list[str],
    *,
    scheduler_host: str | None = None,
    cpus_per_node: int | None = None,
    tls: bool = False,
    tls_files: TLSPaths = (None, None, None),
    timeout: float = READY_TIMEOUT_S,
    keep_on_failure: bool = False,
    log: Callable[[str], None] = print,
    ship_progress: Callable[[str, int], None] | None = None,
    report: Callable[[int, int], None] | None = None,
    firewall: bool = True,
    relay_hosts: list[str] | tuple[str, ...] = (),
    registry: str | None = None,
) -> multihost.UpResult:
    """One dispy cluster on every host (Docker endpoints): the scheduler on the first (or
    scheduler_host), one node per host. relay_hosts: hosts (ENDPOINT[=ADDRESS]) on other
    subnets that run a dispynetrelay and no node; the nodes of their subnets are then found
    through them. registry: HOST:PORT every host pulls the images from (pushed there first with
    push_images), instead of their being sent over each connection. Fails as a whole, every
    host rolled back. (Cluster.up(name, hosts=...) is the same, and gives the Cluster.)"""
    cluster = Cluster.up(
        name, hosts=hosts, scheduler_host=scheduler_host, cpus_per_node=cpus_per_node, tls=tls,
        tls_files=tls_files, timeout=timeout, keep_on_failure=keep_on_failure, firewall=firewall,
        relay=bool(relay_hosts), relay_hosts=relay_hosts, registry=registry,
        reporter=Callbacks(log, ship_progress, report),
    )  # fmt: skip
    assert cluster.up_result is not None
    return cluster.up_result


def multihost_clusters() -> list[str]:
    """The names of the clusters across hosts (from their host lists in the config directory)."""
    return HostsProvider().names()


def is_multihost(name: str) -> bool:
    """Whether `name` is a cluster across hosts (its host list is in the config directory)."""
    return HostsProvider().holds(name)


def _across_hosts(name: str, tls_files: TLSPaths) -> Cluster:
    cluster = Cluster(name, must_exist=False, tls_files=tls_files)
    if not cluster.across_hosts:
        raise ClusterError(f"no multi-host cluster named {name!r} (sorctl up --host ...)")
    return cluster


def hosts_status(name: str, tls_files: TLSPaths = (None, None, None)) -> HostsStatus:
    """Cluster(name).status() of a cluster across hosts."""
    return _across_hosts(name, tls_files).status()  # type: ignore[return-value]


def scale_hosts(
    name: str,
    *,
    add: list[str] | tuple[str, ...] = (),
    remove: list[str] | tuple[str, ...] = (),
    tls_files: TLSPaths = (None, None, None),
    timeout: float = READY_TIMEOUT_S,
    log: Callable[[str], None] = print,
    ship_progress: Callable[[str, int], None] | None = None,
    registry: str | None = None,
) -> multihost.ScaleResult:
    """Add hosts (`ENDPOINT[=ADDRESS]`, as for up_hosts: a node on each, images sent if need
    be) to, and remove hosts (their endpoints) from, a cluster across hosts that runs; returns
    when the scheduler counts the new nodes and no longer the removed ones. Every member's
    packet filter and the kept host list follow. Fails as a whole (InputError for a request
    that cannot be done, ClusterError for a host that does not answer or a node not counted in
    time), with the cluster left as it was. registry: HOST:PORT the added hosts pull the images
    from, as for up_hosts. (Cluster(name).scale(add=, remove=) is the same.)"""
    if not is_multihost(name):
        raise ClusterError(
            f"no multi-host cluster named {name!r} (scale --nodes is for one engine)"
        )
    cluster = _across_hosts(name, tls_files)
    return cluster.scale(add=add, remove=remove, timeout=timeout, log=log,
                         ship_progress=ship_progress, registry=registry)  # fmt: skip


class HostsCluster(Cluster):
    """Deprecated: `Cluster(name)` is a cluster across hosts too. Kept for code written against
    it: the same Cluster, refusing a name that is no cluster across hosts."""

    def __init__(self, name: str, *, tls_files: TLSPaths = (None, None, None)) -> None:
        super().__init__(name, must_exist=False, tls_files=tls_files)
        if not self.across_hosts:
            raise ClusterError(f"no multi-host cluster named {name!r} (sorctl up --host ...)")

    def __repr__(self) -> str:
        return f"HostsCluster({self.name!r})"


# ---- `sorctl doctor`


def doctor(
    hosts: list[str] | tuple[str, ...] = (),
    *,
    registry: str | None = None,
    insecure_registry: bool = False,
    tls_files: TLSPaths = (None, None, None),
) -> list[Check]:
    """Every check of this machine (engine, images, a base image, disk, dispy's ports, the
    config directory), of a registry (HOST:PORT) if given, and of each `--host` endpoint."""
    from sorctl.engine import doctor as checks

    files = TLSFiles.resolve(*tls_files)
    specs = parse_hosts(list(hosts), tls=files is not None)
    return checks.run(specs, files, registry_address=registry, insecure_registry=insecure_registry)
