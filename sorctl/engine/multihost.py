"""One dispy cluster across several machines' Docker engines: up (with rollback on every host,
relay hosts if asked), status, scale by hosts (undone as a whole on failure), logs, a solve,
down. Planning is sorctl.cluster.hostplan's; this walks it with one client per engine, each
client used by one thread at a time, and does each host's part with the helpers one engine
uses too (engine.apply: containers made, waited for, checked, removed; engine.observe: the
scheduler's table, the containers a `logs` target picks, the log streams). Engine labels stay
the state on every host; the list of hosts is kept beside the cluster's secret (the only way
to know where to look)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import docker
import requests

from sorctl.cluster import hostplan, material
from sorctl.cluster.hostplan import HostContainer, HostPlan, ScalePlan
from sorctl.cluster.hosts import HostSpec
from sorctl.cluster.readiness import SchedulerView, missing_nodes
from sorctl.engine import apply, observe, ship, solve_container
from sorctl.engine import firewall as fw
from sorctl.engine import registry as registries
from sorctl.engine.connect import TLSFiles, connect, connect_host, why
from sorctl.engine.fanout import parallel
from sorctl.engine.images import image_ref, sorctl_version
from sorctl.errors import ClusterError, EngineError, InputError, PortsTakenError, SorctlError
from sorctl.names import CLIENT_PORT, LABEL_CLUSTER, LABEL_ROLE, container_name
from sorctl.options import SolveOptions
from sorctl.solver.generated import Grid
from sorctl.solver.io import System
from sorctl.solver.npz_check import SystemFile
from sorctl.solver.result import SolveResult

Log = Callable[[str], None]
Clients = dict[str, docker.DockerClient]  # endpoint -> a client of that host's engine
POLL_S = 0.5  # the scheduler's table, read from another machine


# ---- reaching the hosts


def connect_all(
    specs: list[HostSpec], tls: TLSFiles | None, warn: Log | None = None
) -> tuple[Clients, dict[str, str]]:
    """(endpoint -> client for the hosts that answer, endpoint -> one-line error for the rest)."""

    def one(spec: HostSpec):
        try:
            return spec.endpoint, connect_host(spec, tls, warn), None
        except SorctlError as exc:
            return spec.endpoint, None, str(exc)

    clients, errors = {}, {}
    for endpoint, client, error in parallel(one, specs):
        if client is not None:
            clients[endpoint] = client
        else:
            errors[endpoint] = error
    return clients, errors


def _connect_every(
    specs: list[HostSpec], tls: TLSFiles | None, log: Log, after: str = "",
    error: type[ClusterError] = ClusterError,
) -> Clients:  # fmt: skip
    """A client of every host, or `error` naming each that does not answer."""
    clients, errors = connect_all(specs, tls, log)
    if errors:
        _close(clients)
        raise error("; ".join(errors.values()) + after)
    return clients


def _close(clients: Clients) -> None:
    for c in clients.values():
        c.close()


def hosts_of(name: str) -> tuple[list[HostSpec], dict] | None:
    return hostplan.load_hosts(material.cluster_dir(name))


def _known(name: str) -> tuple[list[HostSpec], dict]:
    """The cluster's hosts and kept record; ClusterError when no such cluster was brought up."""
    found = hosts_of(name)
    if found is None:
        raise ClusterError(f"no multi-host cluster named {name!r}")
    return found


def _reach(specs: list[HostSpec], record: dict, tls_files: TLSFiles | None):
    """Every host of the cluster, relay hosts too, with a client of each that answers:
    (those hosts, endpoint -> client, endpoint -> why not)."""
    specs = specs + hostplan.relay_hosts(record)
    clients, errors = connect_all(specs, tls_of(record, tls_files))
    return specs, clients, errors


def names() -> list[str]:
    """Every cluster across hosts this user brought up (their host lists)."""
    root = material.home() / "clusters"
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / hostplan.HOSTS_FILE).is_file())


def tls_of(record: dict, given: TLSFiles | None) -> TLSFiles | None:
    """The TLS files given now, else those `up` used (their paths are in the host list)."""
    if given is not None or not record.get("tls"):
        return given
    return TLSFiles(*(Path(p) for p in record["tls"]))


# ---- each host's address for dispy, found on the host


def _machine_address(spec: HostSpec, client: docker.DockerClient) -> str | None:
    """The host's address as this machine resolves its endpoint (ssh config HostName included)."""
    name = spec.hostname
    if spec.kind == "ssh":
        try:
            import paramiko  # the docker[ssh] extra

            path = os.path.expanduser("~/.ssh/config")
            if os.path.exists(path):
                name = paramiko.SSHConfig.from_path(path).lookup(name).get("hostname", name)
        except Exception:  # no usable config: the endpoint's own name
            pass
    if spec.kind == "context" or not name:
        base = client.api.base_url
        name = base.split("://", 1)[-1].split(":")[0].split("@")[-1]
    try:
        return socket.gethostbyname(name)
    except OSError:
        return None


def probe(spec: HostSpec, client: docker.DockerClient, target: str) -> tuple[str | None, list[int]]:
    """On the host, with its networking: the source address of its route to `target`, and which
    dispy ports something already binds."""
    script = f"ip -4 -o route get {target}; echo ----; cat /proc/net/tcp /proc/net/udp"
    try:
        out = client.containers.run(
            image_ref("node"), entrypoint=["bash", "-c", script], network_mode="host",
            remove=True, user="root",
        )  # fmt: skip
    except docker.errors.ContainerError as exc:
        raise ClusterError(f"host {spec.label}: no route to {target} ({exc.stderr!r})") from None
    route, _, proc = out.decode(errors="replace").partition("----")
    return hostplan.route_source(route), hostplan.ports_in_use(proc)


def find_addresses(
    specs: list[HostSpec], clients: dict[str, docker.DockerClient], sched: HostSpec
) -> dict[str, str]:
    """endpoint -> the address dispy binds there: given (ENDPOINT=ADDRESS), or the source of
    that host's route to the scheduler (the scheduler's own: its route to another host).
    Fails when a host's dispy ports are taken."""
    others = [s for s in specs if s is not sched]
    target = sched.address
    if target is None:
        peer = others[0] if others else sched
        target = _machine_address(peer, clients[peer.endpoint])
        if target is None:
            raise ClusterError(
                f"host {peer.label}: cannot resolve its address here; give it as "
                f"--host {peer.endpoint}=ADDRESS"
            )
    sched_src, busy = probe(sched, clients[sched.endpoint], target)
    sched_addr = sched.address or sched_src
    if not sched_addr:
        raise ClusterError(f"host {sched.label}: no route to {target}")
    if busy:
        raise PortsTakenError(f"host {sched.label}: dispy port(s) {busy} are taken")
    out = {sched.endpoint: sched_addr}
    out.update(dict(parallel(lambda s: _address_for(s, clients[s.endpoint], sched_addr), others)))
    return out


def _address_for(spec: HostSpec, client: docker.DockerClient, sched_addr: str) -> tuple[str, str]:
    """(endpoint, the address its node binds): given, or its route's source to the scheduler;
    its dispy ports must be free."""
    src, taken = probe(spec, client, sched_addr)
    if taken:
        raise PortsTakenError(f"host {spec.label}: dispy port(s) {taken} are taken")
    addr = spec.address or src
    if not addr:
        raise ClusterError(f"host {spec.label}: no route to the scheduler {sched_addr}")
    return spec.endpoint, addr


def _on_link(
    spec: HostSpec, client: docker.DockerClient, targets: dict[str, str]
) -> dict[str, bool]:
    """key -> whether the host reaches that address without a router (same subnet)."""
    script = "; ".join(f"echo {k}=$(ip -4 -o route get {a} 2>&1 | head -1)"
                       for k, a in enumerate(targets.values()))  # fmt: skip
    out = client.containers.run(
        image_ref("node"), entrypoint=["bash", "-c", script], network_mode="host",
        remove=True, user="root",
    ).decode(errors="replace")  # fmt: skip
    lines = dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)
    return {key: hostplan.on_link(lines.get(str(k), "")) for k, key in enumerate(targets)}


# ---- the hosts' part of the cluster, with the helpers of one engine


def scheduler_view(client: docker.DockerClient, name: str) -> SchedulerView:
    """The nodes the scheduler counts, from the table it publishes in its container (empty
    while it starts, or when it is gone or its table is stale)."""
    return observe.read_scheduler_view(client, container_name(name, "scheduler"))


def _fail_if_exited(clients: Clients, containers: list[HostContainer]) -> None:
    """ClusterError (one line naming the host) for a container of `containers` that exited."""
    for host in dict.fromkeys(c.host for c in containers):
        apply.fail_if_exited(clients[host], [c.name for c in containers if c.host == host], host)


def _wait_counted(
    clients: Clients, plan: HostPlan, want: dict[str, str], deadline: float,
    report: Callable[[int, int], None] | None = None,
) -> SchedulerView:  # fmt: skip
    """Until the scheduler counts every node of `want` (address -> container) with its CPUs."""

    def seen(view: SchedulerView) -> None:
        if report:
            report(len(want) - len(missing_nodes(view, want)), len(want))

    return apply.wait_view(
        lambda: scheduler_view(clients[plan.scheduler_host], plan.name),
        lambda view: not missing_nodes(view, want),
        deadline,
        lambda view: ClusterError(
            f"cluster {plan.name}: the scheduler does not count "
            + ", ".join(missing_nodes(view, want))
        ),
        check=lambda: _fail_if_exited(clients, plan.containers),
        seen=seen,
        poll_s=POLL_S,
    )


def wait_ready(
    clients: Clients, plan: HostPlan, deadline: float,
    report: Callable[[int, int], None] | None = None,
) -> SchedulerView:  # fmt: skip
    """Until the scheduler counts every node with its CPUs (its own table says so)."""
    return _wait_counted(clients, plan, plan.expected_nodes, deadline, report)


def _start(clients: Clients, containers: list[HostContainer], files: dict[str, bytes]) -> None:
    parallel(lambda c: apply.create_host_container(clients[c.host], c, files), containers)


def _clean(client: docker.DockerClient, host: str, name: str, firewall: bool = True) -> int:
    """The cluster's containers and (if it has them) packet filter rules on one host."""
    n = apply.remove_cluster(client, name)["containers"]
    if firewall:
        fw.remove(client, host, name)
    return n


def _rollback(client: docker.DockerClient, host: str, name: str, firewall: bool) -> str | None:
    """_clean, twice if need be; None when done, else a line saying what is left there."""
    for attempt in (1, 2):
        try:
            _clean(client, host, name, firewall)
            return None
        except Exception as exc:  # a transport hiccup: once more, then say so
            if attempt == 2:
                return f"rollback on {host} incomplete ({why(exc)}): `sorctl down --name {name}`"
    return None


def _firewall(clients: Clients, specs: list[HostSpec], name: str, members: list[str]) -> None:
    """On every host of specs: dispy's ports open to `members` only."""
    parallel(lambda s: fw.add(clients[s.endpoint], s.label, name, members), specs)


def _send_images(
    specs: list[HostSpec], clients: Clients, roles: dict[str, list[str]],
    progress: ship.Progress | None, registry: str | None = None,
) -> list[ship.Shipped]:  # fmt: skip
    """This version's images of `roles[endpoint]` to each host that lacks them: sent over its
    connection, or pulled by the host from `registry` (HOST:PORT) when one is given."""

    def send(spec: HostSpec) -> ship.Shipped:
        here = connect()
        try:
            if registry:
                return registries.pull(here, clients[spec.endpoint], spec.label, registry,
                                       roles[spec.endpoint], progress)  # fmt: skip
            return ship.ship(here, clients[spec.endpoint], spec.label, roles[spec.endpoint],
                             progress)  # fmt: skip
        finally:
            here.close()

    return parallel(send, specs)


def _images_line(which: str, registry: str | None) -> str:
    if not registry:
        return f"images: checking {which} (sending what a host lacks)"
    return f"images: checking {which} (each pulls what it lacks); {registries.describe(registry)}"


def _put_nodes_file(client: docker.DockerClient, name: str, addresses: list[str]) -> None:
    """The scheduler's members' file: its launcher drops the nodes taken out of it at once
    (images/run-daemon.py), and its entrypoint pings the members listed at every start."""
    files = {hostplan.nodes_file_name(): hostplan.nodes_file(addresses)}
    apply.put_files(client, container_name(name, "scheduler"), files)


# ---- up


@dataclass
class UpResult:
    plan: HostPlan
    shipped: list[ship.Shipped] = field(default_factory=list)
    ready_s: float = 0.0


def up(
    name: str,
    specs: list[HostSpec],
    tls_files: TLSFiles | None,
    *,
    scheduler_host: str | None = None,
    cpus_per_node: int | None = None,
    tls: bool = False,
    timeout: float = 120.0,
    keep_on_failure: bool = False,
    log: Log = print,
    ship_progress: ship.Progress | None = None,
    report: Callable[[int, int], None] | None = None,
    use_firewall: bool = True,
    relays: list[HostSpec] | None = None,
    registry: str | None = None,
) -> UpResult:
    """Bring the cluster up on every host, or fail as a whole (every host rolled back).
    relays: hosts that run a dispynetrelay (and no node) for the nodes of their subnet.
    registry: HOST:PORT the hosts pull the images from (else they are sent over each
    connection)."""
    t0 = time.monotonic()
    relays = relays or []
    sched = hostplan.pick_scheduler_host(specs, scheduler_host)
    _check_up(name, specs, relays)
    clients = _connect_every(specs + relays, tls_files, log, error=EngineError)
    started = False
    try:
        shipped = _ship_for_up(specs, relays, sched, clients, ship_progress, log, registry)
        plan = _plan_up(name, specs, relays, sched, clients, cpus_per_node, tls, log)
        files = material.create(name, tls).files()
        hostplan.save_hosts(
            material.cluster_dir(name), plan, specs, tls_files.paths() if tls_files else None,
            firewall=use_firewall, cpus_per_node=cpus_per_node, dispy_tls=tls, relays=relays,
        )  # fmt: skip
        started = True
        if use_firewall:
            members = sorted(set(plan.addresses.values()))
            log(f"firewall: dispy ports on every host open to the {len(members)} member(s) only")
            _firewall(clients, specs + relays, name, members)
        _start_up(clients, plan, sched, files, log)
        # the timeout is the wait for the scheduler's count, not the images' journey
        wait_ready(clients, plan, time.monotonic() + timeout, report)
        return UpResult(plan, shipped, time.monotonic() - t0)
    except BaseException as exc:
        if started and not keep_on_failure:
            _roll_back_up(clients, name, use_firewall, log)
        if isinstance(exc, (SorctlError, KeyboardInterrupt)):
            raise
        # a transport failure (ssh channel, TLS, HTTP) after connecting: one line
        raise ClusterError(f"cluster {name}: up failed: {why(exc)}") from None
    finally:
        _close(clients)


def _check_up(name: str, specs: list[HostSpec], relays: list[HostSpec]) -> None:
    """What `up` refuses before it reaches any host."""
    for relay in relays:
        if any(relay.endpoint == s.endpoint for s in specs):
            raise InputError(
                f"{relay.endpoint} is both a --host and a --relay-host: a relay and a node cannot "
                "share one address (both bind port 9701)"
            )
    if hosts_of(name) is not None:
        raise ClusterError(f"cluster {name!r} is already up across hosts; `sorctl down` it first")


def _ship_for_up(
    specs: list[HostSpec], relays: list[HostSpec], sched: HostSpec, clients: Clients,
    progress: ship.Progress | None, log: Log, registry: str | None,
) -> list[ship.Shipped]:  # fmt: skip
    log(_images_line("every host", registry))
    # the scheduler's host also runs the client container of each solve
    roles = {s.endpoint: ["node"] + (["scheduler", "client"] if s is sched else [])
             for s in specs}  # fmt: skip
    roles.update({r.endpoint: ["node", "relay"] for r in relays})  # node: probes, firewall
    return _send_images(specs + relays, clients, roles, progress, registry)


def _plan_up(
    name: str, specs: list[HostSpec], relays: list[HostSpec], sched: HostSpec, clients: Clients,
    cpus_per_node: int | None, tls: bool, log: Log,
) -> HostPlan:  # fmt: skip
    """The host plan, from what each host says: its address, and who shares a relay's subnet."""
    log("addresses: each host's route to the scheduler")
    addresses = find_addresses(specs, clients, sched)
    relayed: set[str] = set()
    if relays:
        sched_addr = addresses[sched.endpoint]
        addresses.update(parallel(
            lambda r: _address_for(r, clients[r.endpoint], sched_addr), relays))  # fmt: skip
        log("relays: which hosts share a relay host's subnet")
        targets = {r.endpoint: addresses[r.endpoint] for r in relays}
        on_link = dict(parallel(
            lambda s: (s.endpoint, _on_link(s, clients[s.endpoint], targets)), specs))  # fmt: skip
        relayed = hostplan.relayed_nodes(specs, relays, sched.endpoint, on_link)
    return hostplan.make_host_plan(
        name, specs, addresses, sched.endpoint, version=sorctl_version(),
        cpus_per_node=cpus_per_node, tls=tls, relays=relays, relayed=relayed,
    )  # fmt: skip


def _start_up(
    clients: Clients, plan: HostPlan, sched: HostSpec, files: dict[str, bytes], log: Log
) -> None:
    """The scheduler, then the relays (a relay announces itself to it when it starts), then a
    node on every node host."""
    log(f"starting the scheduler on {sched.label} ({plan.scheduler_address})")
    _start(clients, plan.on(sched.endpoint)[:1], files)
    relays = [c for c in plan.containers if c.role == "relay"]
    if relays:
        log(
            f"starting {len(relays)} relay(s): "
            + ", ".join(f"{c.host} ({c.env['SORCTL_HOST']})" for c in relays)
        )
        _start(clients, relays, files)
    nodes = [c for c in plan.containers if c.role == "node"]
    log(f"starting {len(nodes)} node(s), one per host")
    _start(clients, nodes, files)


def _roll_back_up(clients: Clients, name: str, use_firewall: bool, log: Log) -> None:
    """Every host cleaned of the cluster; its secret and host list go when nothing is left."""
    left = [e for e in parallel(lambda e: _rollback(clients[e], e, name, use_firewall),
                                list(clients)) if e]  # fmt: skip
    for line in left:
        log(line)
    if not left:
        material.remove(name)


# ---- status


@dataclass
class HostStatus:
    endpoint: str
    reachable: bool
    error: str | None
    containers: list[dict]
    rules: list[str] = field(default_factory=list)
    address: str | None = None  # the address its node binds (dispy's key for it)


@dataclass
class MultiStatus:
    """What `sorctl status --json` prints for a cluster across hosts."""

    name: str
    scheduler_host: str
    scheduler_address: str
    hosts: list[HostStatus]
    nodes: dict[str, int]  # address -> CPUs the scheduler counts
    scheduler_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _host_status(
    spec: HostSpec, client: docker.DockerClient | None, error: str | None, name: str,
    firewall: bool,
) -> HostStatus:  # fmt: skip
    """One host: reachable?, the cluster's containers there and its packet filter rules."""
    rows, rules = [], []
    if client is not None:
        for c in observe.labelled_containers(client, name):
            rows.append({"name": c.name, "role": c.labels.get(LABEL_ROLE), "state": c.status})
        if firewall:
            rules = fw.rules(client, spec.endpoint, name)
    return HostStatus(spec.endpoint, client is not None, error, rows, rules, spec.address)


def status(name: str, tls_files: TLSFiles | None) -> MultiStatus:
    specs, record = _known(name)
    specs, clients, errors = _reach(specs, record, tls_files)
    try:
        firewall = record.get("firewall", True)
        hosts = [_host_status(s, clients.get(s.endpoint), errors.get(s.endpoint), name, firewall)
                 for s in specs]  # fmt: skip
        nodes: dict[str, int] = {}
        sched_err = None
        sched = clients.get(record["scheduler_host"])
        if sched is None:
            sched_err = errors.get(record["scheduler_host"], "unreachable")
        else:
            nodes = scheduler_view(sched, name).nodes
        return MultiStatus(name, record["scheduler_host"], record["scheduler_address"], hosts,
                           nodes, sched_err)  # fmt: skip
    finally:
        _close(clients)


# ---- down


def down(name: str, tls_files: TLSFiles | None) -> tuple[dict[str, int], dict[str, str]]:
    """(endpoint -> containers removed, endpoint -> why not). The host list and secret stay
    while a host could not be cleaned, so that a later `down` finishes the job."""
    found = hosts_of(name)
    if found is None:
        return {}, {}
    specs, record = found
    specs, clients, errors = _reach(specs, record, tls_files)
    removed: dict[str, int] = {}

    def one(endpoint: str) -> tuple[str, int | None, str | None]:
        try:
            return endpoint, _clean(clients[endpoint], endpoint, name,
                                    record.get("firewall", True)), None  # fmt: skip
        except (SorctlError, docker.errors.APIError) as exc:
            return endpoint, None, f"host {endpoint}: {exc}"

    try:
        for endpoint, n, error in parallel(one, list(clients)):
            if error:
                errors[endpoint] = error
            else:
                removed[endpoint] = n or 0
    finally:
        _close(clients)
    if not errors:
        material.remove(name)
    return removed, errors


# ---- scale: hosts added to and removed from a cluster that runs


@dataclass
class ScaleResult:
    name: str
    added: dict[str, str]  # endpoint -> the address its new node binds
    removed: dict[str, str]  # endpoint -> the address its node had
    nodes: dict[str, int]  # what the scheduler counts at the end: address -> CPUs
    shipped: list[ship.Shipped] = field(default_factory=list)
    seconds: float = 0.0
    left: list[str] = field(default_factory=list)  # what a removed host still has, if anything


def scale(
    name: str,
    add: list[HostSpec],
    remove: list[str],
    tls_files: TLSFiles | None,
    *,
    timeout: float = 120.0,
    log: Log = print,
    ship_progress: ship.Progress | None = None,
    registry: str | None = None,
) -> ScaleResult:
    """Add hosts (a node on each, counted by the scheduler) and remove hosts (their node stopped
    and no longer counted) on a cluster across hosts that runs. Every member's packet filter
    follows, the scheduler's members' file and the host list too. Fails as a whole: what it did
    is undone, the cluster left as it was."""
    t0 = time.monotonic()
    specs, record = _known(name)
    run = _Scaling(name, specs, record, hostplan.plan_scale(specs, record, add, remove), log)
    run.connect(tls_of(record, tls_files))
    try:
        run.add_hosts(ship_progress, registry)
        run.open_firewall()
        run.write_members(leaving=True)
        run.start_nodes(t0 + timeout)
        run.stop_removed(t0 + timeout)
    except BaseException as exc:
        for line in run.undo():
            log(line)
        _close(run.clients)
        if isinstance(exc, (SorctlError, KeyboardInterrupt)):
            raise
        raise ClusterError(f"cluster {name}: scale failed: {why(exc)}") from None
    try:  # done: from here on the new host list stands; what follows only tidies
        run.finish()
    finally:
        _close(run.clients)
    run.result.seconds = time.monotonic() - t0
    return run.result


class _Scaling:
    """One `scale` call, step by step, with what each step changed (for undo)."""

    def __init__(self, name: str, specs: list[HostSpec], record: dict, sp: ScalePlan,
                 log: Log) -> None:  # fmt: skip
        self.name, self.specs, self.record, self.sp, self.log = name, specs, record, sp, log
        self.use_fw = record.get("firewall", True)
        self.sched_host, self.sched_addr = record["scheduler_host"], record["scheduler_address"]
        self.old_addrs = {h["endpoint"]: h["address"] for h in record["hosts"]}
        self.old_members = sorted(set(self.old_addrs.values()))
        self.result = ScaleResult(
            name, {}, {s.endpoint: self.old_addrs[s.endpoint] for s in sp.removed}, {}
        )
        self.addresses: dict[str, str] = {}  # endpoint -> address, for the hosts after
        self.clients: Clients = {}
        self.created: list[str] = []  # endpoints with containers or rules of this call
        self.stopped: list[HostContainer] = []
        self.fw_open = self.file_written = False

    @property
    def sched(self) -> docker.DockerClient:
        return self.clients[self.sched_host]

    def connect(self, tls: TLSFiles | None) -> None:
        """Every host whose state changes: the scheduler's (its members' file), the added and
        removed ones, and with the firewall every member (their rules name the members)."""
        sp = self.sp
        touched = [s for s in self.specs
                   if self.use_fw or s in sp.removed or s.endpoint == self.sched_host]  # fmt: skip
        self.clients = _connect_every(touched + sp.added, tls, self.log,
                                      f" (cluster {self.name} left as it was)")  # fmt: skip

    def add_hosts(self, progress: ship.Progress | None, registry: str | None) -> None:
        """Images to the new hosts (sent, or pulled from registry), and the address each new
        node binds."""
        sp, clients = self.sp, self.clients
        if sp.added:
            self.log(_images_line(f"{len(sp.added)} new host(s)", registry))
            roles = {s.endpoint: ["node"] for s in sp.added}
            self.result.shipped = _send_images(sp.added, clients, roles, progress, registry)
            self.log("addresses: each new host's route to the scheduler")
            found = parallel(
                lambda s: _address_for(s, clients[s.endpoint], self.sched_addr), sp.added
            )
            self.result.added = dict(found)
        self.addresses = {s.endpoint: self.old_addrs[s.endpoint] for s in sp.kept}
        self.addresses |= self.result.added
        hostplan.check_distinct(sp.after, self.addresses)

    def open_firewall(self) -> None:
        """While it changes, the rules let the old and the new members in (a removed node still
        says goodbye to the scheduler); finish() keeps the members of after."""
        sp, added = self.sp, self.result.added
        if not (self.use_fw and sp.added):
            return
        during = sorted(set(self.old_members) | set(added.values()))
        self.log(f"firewall: dispy ports on {len(sp.kept) + len(sp.added)} host(s) open to the "
                 f"new member(s) {', '.join(added.values())}")  # fmt: skip
        self.created += [s.endpoint for s in sp.added]
        self.fw_open = True
        _firewall(self.clients, sp.kept + sp.added, self.name, during)

    def write_members(self, leaving: bool) -> None:
        """The members' file: the new ones in; while `leaving`, the removed ones still in until
        they are stopped (taking one out makes the scheduler drop it, images/run-daemon.py)."""
        members = [self.addresses[s.endpoint] for s in self.sp.after]
        if leaving:
            members += [self.old_addrs[s.endpoint] for s in self.sp.removed]
        self.file_written = True
        _put_nodes_file(self.sched, self.name, members)

    def start_nodes(self, deadline: float) -> None:
        """A node on each new host, counted by the scheduler before the deadline."""
        sp, record = self.sp, self.record
        if not sp.added:
            return
        cpus, dispy_tls = record.get("cpus_per_node"), bool(record.get("dispy_tls"))
        labels = hostplan.labels_for(self.name, sorctl_version(), len(sp.after), cpus, dispy_tls)
        new = [hostplan.node_container(self.name, s.endpoint, sp.indexes[s.endpoint],
                                       self.result.added[s.endpoint], self.sched_addr, labels,
                                       cpus)
               for s in sp.added]  # fmt: skip
        self.log(f"starting {len(new)} node(s) on the new host(s)")
        self.created += [c.host for c in new if c.host not in self.created]
        _start(self.clients, new, material.load(self.name).files())
        probe = HostPlan(self.name, self.sched_host, self.sched_addr, self.addresses, new)
        _wait_counted(self.clients, probe, {c.env["SORCTL_HOST"]: c.name for c in new}, deadline)

    def stop_removed(self, deadline: float) -> None:
        """The removed hosts' nodes stopped, out of the members' file, no longer counted, and every
        node that stays counted with its CPUs."""
        sp = self.sp
        if not sp.removed:
            return
        gone = set(self.result.removed.values())
        here = self.old_addrs[self.sched_host]  # its node stays: an empty table is no answer
        self.log(f"stopping the node(s) on {', '.join(s.label for s in sp.removed)}")
        for spec in sp.removed:
            f = {"label": [f"{LABEL_CLUSTER}={self.name}", f"{LABEL_ROLE}=node"]}
            for c in self.clients[spec.endpoint].containers.list(filters=f):
                self.stopped.append(HostContainer(spec.endpoint, c.name, "node", {}, [], {}))
        parallel(lambda c: self.clients[c.host].api.stop(c.name, timeout=10), self.stopped)
        self.write_members(leaving=False)

        # done when the removed nodes are gone and every one that stays is counted with its
        # CPUs (a table read while the scheduler drops a node can show a staying one at 0)
        staying = [self.addresses[s.endpoint] for s in sp.after]

        def uncounted(view: SchedulerView) -> list[str]:
            return [a for a in staying if view.nodes.get(a, 0) <= 0]

        def still(view: SchedulerView) -> str:
            if here not in view.nodes:
                return "its scheduler publishes no table of nodes"
            if gone & set(view.nodes):
                return f"the scheduler still counts {', '.join(sorted(gone & set(view.nodes)))}"
            return f"the scheduler does not count {', '.join(uncounted(view))}"

        apply.wait_view(
            lambda: scheduler_view(self.sched, self.name),
            lambda view: not gone & set(view.nodes) and not uncounted(view),
            deadline,
            lambda view: ClusterError(f"cluster {self.name}: {still(view)}"),
            poll_s=POLL_S,
        )

    def undo(self) -> list[str]:
        """Back to the cluster as it was; lines saying what could not be undone."""
        lines: list[str] = []
        name, clients, fw_changed = self.name, self.clients, self.use_fw and self.fw_open

        def attempt(what: str, fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as exc:  # keep undoing the rest, then say what is left
                lines.append(f"undo: {what}: {why(exc)}")

        for endpoint in self.created:
            line = _rollback(clients[endpoint], endpoint, name, fw_changed)
            if line:
                lines.append(line)
        for c in self.stopped:
            attempt(f"restart {c.name} on {c.host}", partial(clients[c.host].api.start, c.name))
        if fw_changed:
            for spec in self.sp.kept:
                restore = partial(fw.add, clients[spec.endpoint], spec.label, name,
                                  self.old_members)  # fmt: skip
                attempt(f"firewall on {spec.endpoint}", restore)
        if self.file_written:
            old_nodes = [self.old_addrs[s.endpoint] for s in self.specs]
            attempt("the scheduler's members",
                    lambda: _put_nodes_file(self.sched, name, old_nodes))  # fmt: skip
        return lines

    def finish(self) -> None:
        """The new host list kept, the removed members shut out and their hosts cleaned, and
        what the scheduler counts now."""
        sp, name = self.sp, self.name
        plan = HostPlan(name, self.sched_host, self.sched_addr, self.addresses,
                        [HostContainer(s.endpoint, "", "node", {}, [], {}, sp.indexes[s.endpoint])
                         for s in sp.after])  # fmt: skip
        hostplan.save_hosts(material.cluster_dir(name), plan, sp.after, self.record.get("tls"),
                            self.use_fw, cpus_per_node=self.record.get("cpus_per_node"),
                            dispy_tls=bool(self.record.get("dispy_tls")))  # fmt: skip
        if self.use_fw and sp.removed:  # the removed members' addresses let in no more
            _firewall(self.clients, sp.after, name, sorted(set(self.addresses.values())))
        for spec in sp.removed:  # no longer in the host list: `down` will not look there
            try:
                _clean(self.clients[spec.endpoint], spec.endpoint, name, self.use_fw)
            except Exception as exc:  # the host list is already saved: say what is left
                self.result.left.append(
                    f"host {spec.endpoint}: not cleaned ({why(exc)}); its containers labelled "
                    f"{LABEL_CLUSTER}={name} (and iptables rules sorctl:{name}) are left there"
                )
        self.result.nodes = scheduler_view(self.sched, name).nodes


# ---- a solve, and the logs


@dataclass
class _Node:
    state: str


@dataclass
class SolveTarget:
    """What solve_container.run reads of a cluster, for one across hosts: the client container
    runs on the scheduler's host with host networking (no NAT between it and the nodes)."""

    name: str
    scheduler_address: str
    secret_file: object
    cert_file: object
    key_file: object
    nodes: list[_Node]
    scheduler_port: int = CLIENT_PORT
    network: str = "host"
    routes: str = ""
    cpus: int = 0  # the nodes' CPUs as the scheduler counts them

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def client_env(self) -> dict[str, str]:
        return {"SORCTL_SCHEDULER": self.scheduler_address}


def solve_target(
    name: str, tls_files: TLSFiles | None = None
) -> tuple[docker.DockerClient, SolveTarget]:
    """(a client of the scheduler's host, the cluster as solve_container.run reads it)."""
    specs, record = _known(name)
    sched = next(s for s in specs if s.endpoint == record["scheduler_host"])
    client = connect_host(sched, tls_of(record, tls_files))
    view = scheduler_view(client, name)
    mat = material.load(name)
    nodes = [_Node("running") for _ in view.nodes]
    target = SolveTarget(name, record["scheduler_address"], mat.secret_file, mat.cert_file,
                         mat.key_file, nodes, cpus=sum(view.nodes.values()))  # fmt: skip
    return client, target


def solve(
    name: str, system: System | SystemFile | Grid, options: SolveOptions,
    tls_files: TLSFiles | None = None, **kw: Any,
) -> SolveResult:  # fmt: skip
    """solve_container.run on the cluster across hosts; the scheduler's host lost mid-solve (its
    engine no longer answers) is one line naming it."""
    client, target = solve_target(name, tls_files)
    try:
        return solve_container.run(target, system, options, client=client, **kw)
    except SorctlError:
        raise
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        host = hosts_of(name)[1]["scheduler_host"]  # type: ignore[index]
        raise ClusterError(
            f"cluster {name}: the scheduler's host {host} stopped answering mid-solve ({why(exc)})"
        ) from None


def logs(
    name: str, target: str | None, follow: bool, tail: int | None,
    warn: Log | None = None, tls_files: TLSFiles | None = None,
) -> Iterator[tuple[str, str]]:  # fmt: skip
    """(container, line) from the cluster's containers on every host (one role's, or one
    container's: `node-2` or its full name); followed ones interleaved as lines arrive. A host
    that does not answer is named through warn and the others still stream."""
    specs, record = _known(name)
    specs, clients, errors = _reach(specs, record, tls_files)
    for error in errors.values():
        if warn:
            warn(error)
    picked = [c for client in clients.values() for c in observe.labelled_containers(client, name)
              if observe.picks(name, target, c.labels.get(LABEL_ROLE), c.name)]  # fmt: skip
    if not picked:
        _close(clients)
        raise InputError(f"no container {target!r} of cluster {name!r} on the hosts that answer")
    try:
        yield from observe.interleave_logs(sorted(picked, key=lambda c: c.name), follow, tail)
    finally:
        _close(clients)
