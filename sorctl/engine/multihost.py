"""One dispy cluster across several machines' Docker engines: up (with rollback on every host,
relay hosts if asked), status, scale by hosts (undone as a whole on failure), down. Planning is
sorctl.cluster.hostplan's; this walks it with one client per engine, each client used by one
thread at a time. Engine labels stay the state on every host; the list of hosts is kept beside
the cluster's secret (the only way to know where to look)."""

from __future__ import annotations

import io
import socket
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import docker
import requests

from sorctl.cluster import hostplan, material
from sorctl.cluster.hostplan import HostContainer, HostPlan
from sorctl.cluster.hosts import HostSpec
from sorctl.cluster.readiness import SchedulerView, missing_nodes, parse_view
from sorctl.engine import firewall as fw
from sorctl.engine import observe, ship
from sorctl.engine import registry as registries
from sorctl.engine.apply import _material_tar
from sorctl.engine.connect import TLSFiles, connect_host, why
from sorctl.engine.images import image_ref, sorctl_version
from sorctl.errors import ClusterError, EngineError, InputError, PortsTakenError, SorctlError
from sorctl.names import LABEL_CLUSTER, LABEL_ROLE, RUN_DIR, SCHEDULER_VIEW_FILE, container_name

Log = Callable[[str], None]


def _parallel(fn: Callable, items: list) -> list:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(fn, items))


def connect_all(
    specs: list[HostSpec], tls: TLSFiles | None, warn: Log | None = None
) -> tuple[dict[str, docker.DockerClient], dict[str, str]]:
    """(endpoint -> client for the hosts that answer, endpoint -> one-line error for the rest)."""

    def one(spec: HostSpec):
        try:
            return spec.endpoint, connect_host(spec, tls, warn), None
        except SorctlError as exc:
            return spec.endpoint, None, str(exc)

    clients, errors = {}, {}
    for endpoint, client, error in _parallel(one, specs):
        if client is not None:
            clients[endpoint] = client
        else:
            errors[endpoint] = error
    return clients, errors


def _close(clients: dict[str, docker.DockerClient]) -> None:
    for c in clients.values():
        c.close()


def _machine_address(spec: HostSpec, client: docker.DockerClient) -> str | None:
    """The host's address as this machine resolves its endpoint (ssh config HostName included)."""
    name = spec.hostname
    if spec.kind == "ssh":
        try:
            import os

            import paramiko

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


def _probe(
    spec: HostSpec, client: docker.DockerClient, target: str
) -> tuple[str | None, list[int]]:
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
    sched_src, busy = _probe(sched, clients[sched.endpoint], target)
    sched_addr = sched.address or sched_src
    if not sched_addr:
        raise ClusterError(f"host {sched.label}: no route to {target}")
    if busy:
        raise PortsTakenError(f"host {sched.label}: dispy port(s) {busy} are taken")
    out = {sched.endpoint: sched_addr}
    out.update(dict(_parallel(lambda s: _address_for(s, clients[s.endpoint], sched_addr), others)))
    return out


def _address_for(spec: HostSpec, client: docker.DockerClient, sched_addr: str) -> tuple[str, str]:
    """(endpoint, the address its node binds): given, or its route's source to the scheduler;
    its dispy ports must be free."""
    src, taken = _probe(spec, client, sched_addr)
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


def _create(client: docker.DockerClient, c: HostContainer, files: dict[str, bytes]) -> None:
    role = c.role if c.role in ("scheduler", "relay") else "node"
    client.api.create_container(
        image_ref(role), name=c.name, hostname=c.name, command=c.command or None,
        environment=c.env, labels=c.labels, detach=True,
        host_config=client.api.create_host_config(network_mode="host"),
    )  # fmt: skip
    client.api.put_archive(c.name, RUN_DIR.rsplit("/", 1)[0], _material_tar({**files, **c.files}))
    client.api.start(c.name)


def scheduler_view(client: docker.DockerClient, name: str) -> SchedulerView:
    """The nodes the scheduler counts, from the table it publishes in its container (empty
    while it starts, or when it is gone or its table is stale)."""
    try:
        stream, _stat = client.api.get_archive(
            container_name(name, "scheduler"), SCHEDULER_VIEW_FILE
        )
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            fh = tar.extractfile(member) if member else None
            text = fh.read().decode(errors="replace") if fh else ""
    except (docker.errors.NotFound, docker.errors.APIError, tarfile.TarError):
        return SchedulerView({}, {})
    return parse_view(text, time.time())


def _fail_if_exited(clients: dict[str, docker.DockerClient], plan: HostPlan) -> None:
    for c in plan.containers:
        try:
            state = clients[c.host].api.inspect_container(c.name)["State"]
        except docker.errors.APIError:
            continue
        if state.get("Status") == "exited":
            tail = clients[c.host].api.logs(c.name, tail=3).decode(errors="replace")
            last = " | ".join(x.strip() for x in tail.splitlines() if x.strip())
            raise ClusterError(f"host {c.host}: {c.name} exited ({last})")


def wait_ready(
    clients: dict[str, docker.DockerClient], plan: HostPlan, deadline: float,
    report: Callable[[int, int], None] | None = None,
) -> SchedulerView:  # fmt: skip
    """Until the scheduler counts every node with its CPUs (its own table says so)."""
    sched = clients[plan.scheduler_host]
    want = plan.expected_nodes
    while True:
        view = scheduler_view(sched, plan.name)
        missing = missing_nodes(view, want)
        if report:
            report(len(want) - len(missing), len(want))
        if not missing:
            return view
        _fail_if_exited(clients, plan)
        if time.monotonic() > deadline:
            raise ClusterError(
                f"cluster {plan.name}: the scheduler does not count {', '.join(missing)}"
            )
        time.sleep(0.5)


def _clean(client: docker.DockerClient, host: str, name: str, firewall: bool = True) -> int:
    """The cluster's containers and (if it has them) packet filter rules on one host."""
    n = remove_on(client, name)
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


def remove_on(client: docker.DockerClient, name: str) -> int:
    f = {"label": f"{LABEL_CLUSTER}={name}"}
    found = client.containers.list(all=True, filters=f)
    for c in found:
        c.remove(force=True, v=True)
    return len(found)


def _send_images(
    specs: list[HostSpec], clients: dict[str, docker.DockerClient], roles: dict[str, list[str]],
    progress: ship.Progress | None, registry: str | None = None,
) -> list[ship.Shipped]:  # fmt: skip
    """This version's images of `roles[endpoint]` to each host that lacks them: sent over its
    connection, or pulled by the host from `registry` (HOST:PORT) when one is given."""

    def send(spec: HostSpec) -> ship.Shipped:
        from sorctl.engine.connect import connect

        here = connect()
        try:
            if registry:
                return registries.pull(here, clients[spec.endpoint], spec.label, registry,
                                       roles[spec.endpoint], progress)  # fmt: skip
            return ship.ship(here, clients[spec.endpoint], spec.label, roles[spec.endpoint],
                             progress)  # fmt: skip
        finally:
            here.close()

    return _parallel(send, specs)


def _images_line(which: str, registry: str | None) -> str:
    if not registry:
        return f"images: checking {which} (sending what a host lacks)"
    return f"images: checking {which} (each pulls what it lacks); {registries.describe(registry)}"


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
    for relay in relays:
        if any(relay.endpoint == s.endpoint for s in specs):
            raise InputError(
                f"{relay.endpoint} is both a --host and a --relay-host: a relay and a node cannot "
                "share one address (both bind port 9701)"
            )
    if hostplan.load_hosts(material.cluster_dir(name)) is not None:
        raise ClusterError(f"cluster {name!r} is already up across hosts; `sorctl down` it first")
    clients, errors = connect_all(specs + relays, tls_files, log)
    if errors:
        _close(clients)
        raise EngineError("; ".join(errors.values()))
    started = False
    try:
        log(_images_line("every host", registry))
        # the scheduler's host also runs the client container of each solve
        roles = {s.endpoint: ["node"] + (["scheduler", "client"] if s is sched else [])
                 for s in specs}  # fmt: skip
        roles.update({r.endpoint: ["node", "relay"] for r in relays})  # node: probes, firewall
        shipped = _send_images(specs + relays, clients, roles, ship_progress, registry)
        log("addresses: each host's route to the scheduler")
        addresses = find_addresses(specs, clients, sched)
        relayed: set[str] = set()
        if relays:
            sched_addr = addresses[sched.endpoint]
            addresses.update(_parallel(
                lambda r: _address_for(r, clients[r.endpoint], sched_addr), relays))  # fmt: skip
            log("relays: which hosts share a relay host's subnet")
            on_link = dict(_parallel(lambda s: (s.endpoint, _on_link(
                s, clients[s.endpoint], {r.endpoint: addresses[r.endpoint] for r in relays})),
                specs))  # fmt: skip
            relayed = hostplan.relayed_nodes(specs, relays, sched.endpoint, on_link)
        plan = hostplan.make_host_plan(
            name, specs, addresses, sched.endpoint, version=sorctl_version(),
            cpus_per_node=cpus_per_node, tls=tls, relays=relays, relayed=relayed,
        )  # fmt: skip
        mat = material.create(name, tls)
        hostplan.save_hosts(
            material.cluster_dir(name), plan, specs, tls_files.paths() if tls_files else None,
            firewall=use_firewall, cpus_per_node=cpus_per_node, dispy_tls=tls, relays=relays,
        )  # fmt: skip
        files = mat.files()
        started = True
        if use_firewall:
            members = sorted(set(addresses.values()))
            log(f"firewall: dispy ports on every host open to the {len(members)} member(s) only")
            _parallel(lambda s: fw.add(clients[s.endpoint], s.label, name, members),
                      specs + relays)  # fmt: skip
        log(f"starting the scheduler on {sched.label} ({plan.scheduler_address})")
        _create(clients[sched.endpoint], plan.on(sched.endpoint)[0], files)
        started_relays = [c for c in plan.containers if c.role == "relay"]
        if started_relays:  # after the scheduler: a relay announces itself to it when it starts
            log(
                f"starting {len(started_relays)} relay(s): "
                + ", ".join(f"{c.host} ({c.env['SORCTL_HOST']})" for c in started_relays)
            )
            _parallel(lambda c: _create(clients[c.host], c, files), started_relays)
        nodes = [c for c in plan.containers if c.role == "node"]
        log(f"starting {len(nodes)} node(s), one per host")
        _parallel(lambda c: _create(clients[c.host], c, files), nodes)
        wait_ready(clients, plan, time.monotonic() + timeout, report)
        return UpResult(plan, shipped, time.monotonic() - t0)
    except BaseException as exc:
        if started and not keep_on_failure:
            left = [e for e in _parallel(lambda e: _rollback(clients[e], e, name, use_firewall),
                                         list(clients)) if e]  # fmt: skip
            for line in left:
                log(line)
            if not left:
                material.remove(name)
        if isinstance(exc, (SorctlError, KeyboardInterrupt)):
            raise
        # a transport failure (ssh channel, TLS, HTTP) after connecting: one line
        raise ClusterError(f"cluster {name}: up failed: {why(exc)}") from None
    finally:
        _close(clients)


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
    name: str
    scheduler_host: str
    scheduler_address: str
    hosts: list[HostStatus]
    nodes: dict[str, int]  # address -> CPUs the scheduler counts
    scheduler_error: str | None = None


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
    from pathlib import Path

    return TLSFiles(*(Path(p) for p in record["tls"]))


def status(name: str, tls_files: TLSFiles | None) -> MultiStatus:
    specs, record = _known(name)
    specs, clients, errors = _reach(specs, record, tls_files)
    try:
        hosts = []
        for spec in specs:
            client = clients.get(spec.endpoint)
            rows = []
            if client is not None:
                f = {"label": f"{LABEL_CLUSTER}={name}"}
                for c in client.containers.list(all=True, filters=f):
                    rows.append({"name": c.name, "role": c.labels.get(LABEL_ROLE),
                                 "state": c.status})  # fmt: skip
            rules = []
            if client is not None and record.get("firewall", True):
                rules = fw.rules(client, spec.endpoint, name)
            hosts.append(HostStatus(spec.endpoint, client is not None,
                                    errors.get(spec.endpoint), rows, rules,
                                    spec.address))  # fmt: skip
        nodes: dict[str, int] = {}
        sched_err = None
        sched = clients.get(record["scheduler_host"])
        if sched is None:
            sched_err = errors.get(record["scheduler_host"], "unreachable")
        else:
            try:
                nodes = scheduler_view(sched, name).nodes
            except docker.errors.APIError as exc:
                sched_err = f"scheduler: {exc.explanation}"
        return MultiStatus(name, record["scheduler_host"], record["scheduler_address"], hosts,
                           nodes, sched_err)  # fmt: skip
    finally:
        _close(clients)


def down(name: str, tls_files: TLSFiles | None) -> tuple[dict[str, int], dict[str, str]]:
    """(endpoint -> containers removed, endpoint -> why not). The host list and secret stay
    while a host could not be cleaned, so that a later `down` finishes the job."""
    found = hosts_of(name)
    if found is None:
        return {}, {}
    specs, record = found
    specs, clients, errors = _reach(specs, record, tls_files)
    removed: dict[str, int] = {}
    try:

        def one(endpoint: str) -> tuple[str, int | None, str | None]:
            try:
                n = _clean(clients[endpoint], endpoint, name, record.get("firewall", True))
                return endpoint, n, None
            except (SorctlError, docker.errors.APIError) as exc:
                return endpoint, None, f"host {endpoint}: {exc}"

        for endpoint, n, error in _parallel(one, list(clients)):
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


def _put_nodes_file(client: docker.DockerClient, name: str, addresses: list[str]) -> None:
    """The scheduler's members' file: its launcher drops the nodes taken out of it at once
    (images/run-daemon.py), and its entrypoint pings the members listed at every start."""
    files = {hostplan.nodes_file_name(): hostplan.nodes_file(addresses)}
    client.api.put_archive(container_name(name, "scheduler"), RUN_DIR.rsplit("/", 1)[0],
                           _material_tar(files))  # fmt: skip


def _wait_view(
    client: docker.DockerClient, name: str, done: Callable[[SchedulerView], bool],
    deadline: float, what: Callable[[SchedulerView], str], check: Callable[[], None] = lambda: None,
) -> SchedulerView:  # fmt: skip
    while True:
        view = scheduler_view(client, name)
        if done(view):
            return view
        check()
        if time.monotonic() > deadline:
            raise ClusterError(f"cluster {name}: {what(view)}")
        time.sleep(0.5)


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
    sp = hostplan.plan_scale(specs, record, add, remove)
    use_fw = record.get("firewall", True)
    sched_host, sched_addr = record["scheduler_host"], record["scheduler_address"]
    old_addrs = {h["endpoint"]: h["address"] for h in record["hosts"]}
    # Every host whose state changes: the scheduler's (its members' file), the added and removed
    # ones, and with the firewall every member (their rules name the members).
    touched = [s for s in specs if use_fw or s in sp.removed or s.endpoint == sched_host]
    clients, errors = connect_all(touched + sp.added, tls_of(record, tls_files), log)
    if errors:
        _close(clients)
        raise ClusterError("; ".join(errors.values()) + f" (cluster {name} left as it was)")
    sched = clients[sched_host]
    old_members = sorted(set(old_addrs.values()))
    result = ScaleResult(name, {}, {s.endpoint: old_addrs[s.endpoint] for s in sp.removed}, {})
    created: list[str] = []  # endpoints with containers or rules of this call
    stopped: list[HostContainer] = []
    fw_open, file_written = False, False
    try:
        if sp.added:
            log(_images_line(f"{len(sp.added)} new host(s)", registry))
            roles = {s.endpoint: ["node"] for s in sp.added}
            result.shipped = _send_images(sp.added, clients, roles, ship_progress, registry)
            log("addresses: each new host's route to the scheduler")
            result.added = dict(_parallel(
                lambda s: _address_for(s, clients[s.endpoint], sched_addr), sp.added))  # fmt: skip
        addresses = {s.endpoint: old_addrs[s.endpoint] for s in sp.kept} | result.added
        hostplan.check_distinct(sp.after, addresses)
        if use_fw and sp.added:
            # while it changes, the rules let the old and the new members in (a removed node
            # still says goodbye to the scheduler); the end keeps the members of after
            during = sorted(set(old_members) | set(result.added.values()))
            log(f"firewall: dispy ports on {len(sp.kept) + len(sp.added)} host(s) open to the "
                f"new member(s) {', '.join(result.added.values())}")  # fmt: skip
            created += [s.endpoint for s in sp.added]
            fw_open = True
            _parallel(lambda s: fw.add(clients[s.endpoint], s.label, name, during),
                      sp.kept + sp.added)  # fmt: skip
        # The members' file: the new ones in; the removed ones still in until they are stopped
        # (taking one out makes the scheduler drop it, see images/run-daemon.py).
        file_written = True
        _put_nodes_file(sched, name, [addresses[s.endpoint] for s in sp.after]
                        + [old_addrs[s.endpoint] for s in sp.removed])  # fmt: skip
        if sp.added:
            labels = hostplan._labels(
                name,
                sorctl_version(),
                len(sp.after),
                record.get("cpus_per_node"),
                bool(record.get("dispy_tls")),
            )
            new = [hostplan.node_container(name, s.endpoint, sp.indexes[s.endpoint],
                                           result.added[s.endpoint], sched_addr, labels,
                                           record.get("cpus_per_node"))
                   for s in sp.added]  # fmt: skip
            files = material.load(name).files()
            log(f"starting {len(new)} node(s) on the new host(s)")
            created += [c.host for c in new if c.host not in created]
            _parallel(lambda c: _create(clients[c.host], c, files), new)
            want = {c.env["SORCTL_HOST"]: c.name for c in new}
            probe = HostPlan(name, sched_host, sched_addr, addresses, new)
            _wait_view(
                sched, name, lambda v: not missing_nodes(v, want), t0 + timeout,
                lambda v: f"the scheduler does not count {', '.join(missing_nodes(v, want))}",
                lambda: _fail_if_exited(clients, probe),
            )  # fmt: skip
        if sp.removed:
            gone = set(result.removed.values())
            here = old_addrs[sched_host]  # its node stays: an empty table is no answer
            log(f"stopping the node(s) on {', '.join(s.label for s in sp.removed)}")
            for spec in sp.removed:
                f = {"label": [f"{LABEL_CLUSTER}={name}", f"{LABEL_ROLE}=node"]}
                for c in clients[spec.endpoint].containers.list(filters=f):
                    stopped.append(HostContainer(spec.endpoint, c.name, "node", {}, [], {}))
            _parallel(lambda c: clients[c.host].api.stop(c.name, timeout=10), stopped)
            _put_nodes_file(sched, name, [addresses[s.endpoint] for s in sp.after])
            _wait_view(
                sched, name, lambda v: here in v.nodes and not gone & set(v.nodes), t0 + timeout,
                lambda v: f"the scheduler still counts {', '.join(sorted(gone & set(v.nodes)))}"
                if here in v.nodes else "its scheduler publishes no table of nodes",
            )  # fmt: skip
    except BaseException as exc:
        for line in _undo_scale(
            clients,
            name,
            sched_host,
            sp,
            created,
            stopped,
            use_fw and fw_open,
            old_members,
            file_written,
            [old_addrs[s.endpoint] for s in specs],
        ):
            log(line)  # fmt: skip
        _close(clients)
        if isinstance(exc, (SorctlError, KeyboardInterrupt)):
            raise
        raise ClusterError(f"cluster {name}: scale failed: {why(exc)}") from None
    # Done: from here on the new host list stands; what follows only tidies.
    try:
        plan = HostPlan(name, sched_host, sched_addr, addresses,
                        [HostContainer(s.endpoint, "", "node", {}, [], {}, sp.indexes[s.endpoint])
                         for s in sp.after])  # fmt: skip
        tls = record.get("tls")
        hostplan.save_hosts(material.cluster_dir(name), plan, sp.after, tls, use_fw,
                            cpus_per_node=record.get("cpus_per_node"),
                            dispy_tls=bool(record.get("dispy_tls")))  # fmt: skip
        if use_fw and sp.removed:  # the removed members' addresses let in no more
            after = sorted(set(addresses.values()))
            _parallel(lambda s: fw.add(clients[s.endpoint], s.label, name, after), sp.after)
        for spec in sp.removed:  # no longer in the host list: `down` will not look there
            try:
                _clean(clients[spec.endpoint], spec.endpoint, name, use_fw)
            except Exception as exc:  # the host list is already saved: say what is left
                result.left.append(
                    f"host {spec.endpoint}: not cleaned ({why(exc)}); its containers labelled "
                    f"{LABEL_CLUSTER}={name} (and iptables rules sorctl:{name}) are left there"
                )
        result.nodes = scheduler_view(sched, name).nodes
    finally:
        _close(clients)
    result.seconds = time.monotonic() - t0
    return result


def _undo_scale(
    clients: dict[str, docker.DockerClient], name: str, sched_host: str, sp: hostplan.ScalePlan,
    created: list[str], stopped: list[HostContainer], fw_changed: bool, old_members: list[str],
    file_written: bool, old_nodes: list[str],
) -> list[str]:  # fmt: skip
    """Back to the cluster as it was; lines saying what could not be undone."""
    lines: list[str] = []

    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # keep undoing the rest, then say what is left
            lines.append(f"undo: {what}: {why(exc)}")

    for endpoint in created:
        line = _rollback(clients[endpoint], endpoint, name, fw_changed)
        if line:
            lines.append(line)
    for c in stopped:
        attempt(f"restart {c.name} on {c.host}", partial(clients[c.host].api.start, c.name))
    if fw_changed:
        for spec in sp.kept:
            restore = partial(fw.add, clients[spec.endpoint], spec.label, name, old_members)
            attempt(f"firewall on {spec.endpoint}", restore)
    if file_written:
        attempt("the scheduler's members",
                lambda: _put_nodes_file(clients[sched_host], name, old_nodes))  # fmt: skip
    return lines


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
    scheduler_port: int = 9702
    network: str = "host"
    routes: str = ""

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
    try:
        view = scheduler_view(client, name)
    except docker.errors.APIError as exc:
        client.close()
        raise ClusterError(f"cluster {name}: its scheduler: {exc.explanation}") from None
    mat = material.load(name)
    nodes = [_Node("running") for _ in view.nodes]
    target = SolveTarget(name, record["scheduler_address"], mat.secret_file, mat.cert_file,
                         mat.key_file, nodes)  # fmt: skip
    return client, target


def solve(name: str, system, options, **kw):
    """solve_container.run on the cluster across hosts; the scheduler's host lost mid-solve (its
    engine no longer answers) is one line naming it."""
    from sorctl.engine import solve_container

    client, target = solve_target(name)
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
    f = {"label": f"{LABEL_CLUSTER}={name}"}
    picked = []
    for client in clients.values():
        for c in client.containers.list(all=True, filters=f):
            role = c.labels.get(LABEL_ROLE)
            if not target or target in (role, c.name) or c.name == f"{name}-{target}":
                picked.append((client, c))
    if not picked:
        _close(clients)
        raise InputError(f"no container {target!r} of cluster {name!r} on the hosts that answer")
    try:
        containers = [c for _, c in sorted(picked, key=lambda p: p[1].name)]
        yield from observe.interleave_logs(containers, follow, tail)
    finally:
        _close(clients)
