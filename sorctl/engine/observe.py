"""Reads clusters back from an engine: on one engine the labels are all the state (what belongs
to which cluster, its shape, its roles). A cluster across hosts also keeps its host list
(engine.multihost), and reads each host back with the helpers here: the scheduler's table of
nodes, which containers a `logs` target picks, the logs themselves.

`find_cluster(client, name)` is the seam other commands use (the distributed solve launches
its client container from a ClusterInfo).
"""

from __future__ import annotations

import io
import ipaddress
import queue
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker.errors

from sorctl.cluster import material
from sorctl.cluster.plan import Shape
from sorctl.cluster.readiness import SchedulerView, parse_view, secret_mismatches
from sorctl.errors import ClusterError, InputError
from sorctl.names import (
    CLIENT_PORT,
    LABEL_CLUSTER,
    LABEL_INDEX,
    LABEL_ROLE,
    LABEL_SHAPE,
    SCHEDULER_VIEW_FILE,
)


@dataclass
class ContainerInfo:
    name: str
    role: str
    index: int
    state: str  # created, running, exited, ...
    health: str  # healthy, unhealthy, starting, or "" when the image has no healthcheck
    networks: dict[str, str]  # network name -> IPv4
    image: str

    @property
    def address(self) -> str:
        return next(iter(self.networks.values()), "")


@dataclass
class NetworkInfo:
    name: str
    role: str
    subnet: str


@dataclass
class ClusterInfo:
    """Everything a client needs to use cluster `name`, and what `status` shows."""

    name: str
    shape: Shape | None  # None when the scheduler (which carries the shape label) is gone
    scheduler_address: str | None
    scheduler_port: int  # SharedJobCluster connects here (dispyscheduler's client port)
    network: str | None  # the network a client container joins (lan, or the single net)
    routes: str  # SORCTL_ROUTES a client on `network` needs ("" in the single layout)
    secret_file: Path | None  # host side, 0600
    cert_file: Path | None
    key_file: Path | None
    containers: list[ContainerInfo] = field(default_factory=list)
    networks: list[NetworkInfo] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def role(self, role: str) -> list[ContainerInfo]:
        return sorted((c for c in self.containers if c.role == role), key=lambda c: c.index)

    @property
    def nodes(self) -> list[ContainerInfo]:
        return self.role("node")

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def client_env(self) -> dict[str, str]:
        """Environment for a client container (the images' env-var contract)."""
        env = {"SORCTL_SCHEDULER": self.scheduler_address or ""}
        if self.routes:
            env["SORCTL_ROUTES"] = self.routes
        return env


def _labels_filter(name: str | None) -> dict[str, Any]:
    return {"label": f"{LABEL_CLUSTER}={name}" if name else LABEL_CLUSTER}


def labelled_containers(client, name: str | None) -> list:
    """Containers labelled with cluster `name` (any cluster: None), inspected; one removed
    between the listing and its inspection (a finished client, a concurrent down) is skipped."""
    found = []
    for row in client.api.containers(all=True, filters=_labels_filter(name)):
        try:
            found.append(client.containers.get(row["Id"]))
        except docker.errors.NotFound:
            continue
    return found


def cluster_names(client) -> list[str]:
    """Every cluster that has at least one labelled container, network or volume."""
    names: set[str] = set()
    f = _labels_filter(None)
    for row in client.api.containers(all=True, filters=f):
        names.add((row.get("Labels") or {}).get(LABEL_CLUSTER, ""))
    for n in client.networks.list(filters=f):
        names.add(n.attrs.get("Labels", {}).get(LABEL_CLUSTER, ""))
    for v in client.volumes.list(filters=f):
        names.add((v.attrs.get("Labels") or {}).get(LABEL_CLUSTER, ""))
    return sorted(n for n in names if n)


def _container_info(c, net_roles: dict[str, str]) -> ContainerInfo:
    attrs = c.attrs
    nets = attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    ipam = {
        n: (v.get("IPAMConfig") or {}).get("IPv4Address") or v.get("IPAddress", "")
        for n, v in nets.items()
    }
    # The client network (lan or net) first, as the plan has it (IPAM addresses are stable even
    # when the container is stopped).
    health = (attrs.get("State", {}).get("Health") or {}).get("Status", "")
    return ContainerInfo(
        name=c.name,
        role=c.labels.get(LABEL_ROLE, ""),
        index=int(c.labels.get(LABEL_INDEX, "0") or 0),
        state=attrs.get("State", {}).get("Status", ""),
        health=health,
        networks=dict(sorted(ipam.items(), key=lambda kv: (net_roles.get(kv[0]) != "lan", kv[0]))),
        image=attrs.get("Config", {}).get("Image", ""),
    )


def find_cluster(client, name: str) -> ClusterInfo | None:
    """Cluster `name` as the engine has it, or None when nothing carries its label."""
    f = _labels_filter(name)
    raw = {c.name: c for c in labelled_containers(client, name)}
    nets = client.networks.list(filters=f)
    net_roles = {n.name: n.attrs.get("Labels", {}).get(LABEL_ROLE, "") for n in nets}
    containers = [_container_info(c, net_roles) for c in raw.values()]
    volumes = [v.name for v in client.volumes.list(filters=f)]
    if not containers and not nets and not volumes:
        return None
    networks = []
    for n in nets:
        configs = (n.attrs.get("IPAM") or {}).get("Config") or [{}]
        networks.append(
            NetworkInfo(
                n.name, n.attrs.get("Labels", {}).get(LABEL_ROLE, ""), configs[0].get("Subnet", "")
            )
        )
    networks.sort(key=lambda n: ({"lan": 0, "net": 0}.get(n.role, 1), n.name))

    sched = next((c for c in containers if c.role == "scheduler"), None)
    shape = None
    routes = ""
    if sched is not None:
        sched_raw = raw[sched.name]
        shape_label = sched_raw.labels.get(LABEL_SHAPE, "")
        nodes = sum(1 for c in containers if c.role == "node")
        shape = Shape.from_label(shape_label, nodes) if shape_label else None
        env_list = sched_raw.attrs.get("Config", {}).get("Env", [])
        env = dict(e.split("=", 1) for e in env_list if "=" in e)
        routes = env.get("SORCTL_ROUTES", "")
    client_net = next((n.name for n in networks if n.role in ("lan", "net")), None)
    secret: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    try:
        mat = material.load(name)
        secret, cert, key = mat.secret_file, mat.cert_file, mat.key_file
    except ClusterError:  # a half-deleted cluster: still found, so `down` can clean it up
        pass
    return ClusterInfo(
        name=name,
        shape=shape,
        scheduler_address=sched.networks.get(client_net or "", sched.address) if sched else None,
        scheduler_port=CLIENT_PORT,
        network=client_net,
        routes=routes,
        secret_file=secret,
        cert_file=cert,
        key_file=key,
        containers=sorted(containers, key=lambda c: (c.role, c.index)),
        networks=networks,
        volumes=sorted(volumes),
    )


def scheduler_view(client, info: ClusterInfo) -> SchedulerView:
    """The nodes the scheduler counts, from the table it publishes in its container."""
    sched = info.role("scheduler")
    return read_scheduler_view(client, sched[0].name) if sched else SchedulerView({}, {})


def read_scheduler_view(client, container: str) -> SchedulerView:
    """The table the scheduler container `container` publishes (empty while it starts, or when
    it is gone; a stopped scheduler's table is stale, and parse_view says so)."""
    try:
        stream, _stat = client.api.get_archive(container, SCHEDULER_VIEW_FILE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            fh = tar.extractfile(member) if member else None
            text = fh.read().decode(errors="replace") if fh else ""
    except (docker.errors.NotFound, docker.errors.APIError, tarfile.TarError):
        return SchedulerView({}, {})
    return parse_view(text, time.time())


def scheduler_secret_mismatches(client, info: ClusterInfo, tail: int = 2000) -> set[str]:
    """Nodes the scheduler ignored for a wrong secret, from the end of its log."""
    sched = info.role("scheduler")
    if not sched:
        return set()
    try:
        raw = client.containers.get(sched[0].name).logs(tail=tail)
    except docker.errors.APIError:
        return set()
    return secret_mismatches(raw.decode(errors="replace"))


def pick_containers(info: ClusterInfo, target: str | None) -> list[ContainerInfo]:
    """Every container of the cluster, or one role's, or one container (`node-2` or its name)."""
    picked = [c for c in info.containers if picks(info.name, target, c.role, c.name)]
    if not picked and target:
        names = ", ".join(c.name for c in info.containers)
        raise InputError(f"no container {target!r} in cluster {info.name!r} (have: {names})")
    return picked


def picks(cluster: str, target: str | None, role: str | None, name: str) -> bool:
    """Whether a `logs` target (none: all; a role; `node-2`; a full name) takes a container."""
    return not target or target in (role, name) or name == f"{cluster}-{target}"


def stream_logs(
    client, names: list[str], follow: bool, tail: int | None
) -> Iterator[tuple[str, str]]:
    """(container, line) from the logs of containers `names` of one engine."""
    return interleave_logs([client.containers.get(n) for n in names], follow, tail)


def interleave_logs(containers: list, follow: bool, tail: int | None) -> Iterator[tuple[str, str]]:
    """(container name, line) from each container's log (on any engines): whole logs one after
    the other, or, followed, interleaved as lines arrive. A stream that breaks (its engine gone)
    ends with one line saying why, and the others go on."""
    kwargs = {"stream": True, "follow": follow, "tail": tail if tail is not None else "all"}

    def lines(container) -> Iterator[tuple[str, str]]:
        buf = b""
        try:
            for chunk in container.logs(**kwargs):
                buf += chunk
                *done, buf = buf.split(b"\n")
                yield from ((container.name, line.decode(errors="replace")) for line in done)
            if buf:
                yield container.name, buf.decode(errors="replace")
        except Exception as exc:  # noqa: BLE001 -- said once; the other streams go on
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            yield container.name, f"(log stream ended: {reason})"

    if not follow or len(containers) == 1:
        for container in containers:
            yield from lines(container)
        return
    q: queue.Queue[tuple[str, str] | None] = queue.Queue()

    def pump(container) -> None:
        try:
            for item in lines(container):
                q.put(item)
        finally:
            q.put(None)

    for container in containers:
        threading.Thread(target=pump, args=(container,), daemon=True).start()
    running = len(containers)
    while running:
        item = q.get()
        if item is None:
            running -= 1
        else:
            yield item


def last_log_lines(client, container_name: str, lines: int = 5) -> list[str]:
    try:
        raw = client.containers.get(container_name).logs(tail=lines)
    except Exception as exc:  # the container may be gone already
        return [f"(no log: {exc})"]
    return raw.decode(errors="replace").splitlines() or ["(no output yet)"]


def used_subnets(client) -> list[str]:
    """Subnets a new network must not overlap: every engine network and every host route."""
    used = []
    for n in client.networks.list():
        for cfg in (n.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet"):
                used.append(cfg["Subnet"])
    return used + host_route_subnets()


def host_route_subnets(path: str = "/proc/net/route") -> list[str]:
    """IPv4 destinations of the host's routes, default route excluded (it covers everything)."""
    out: list[str] = []
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        cols = line.split()
        if len(cols) < 8:
            continue
        dest = ipaddress.IPv4Address(int(cols[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(cols[7], 16).to_bytes(4, "little"))
        if int(mask) == 0:
            continue
        out.append(str(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)))
    return out


def status_dict(client, info: ClusterInfo) -> dict[str, Any]:
    """`status --json`: one object per cluster."""
    view = scheduler_view(client, info)
    nodes = []
    for c in info.nodes:
        nodes.append(
            {
                "name": c.name,
                "address": c.address,
                "state": c.state,
                "scheduler_cpus": view.nodes.get(c.address, 0),
                "discovered": view.nodes.get(c.address, 0) > 0,
            }
        )
    return {
        "name": info.name,
        "shape": asdict(info.shape) if info.shape else None,
        "connect": {
            "scheduler_address": info.scheduler_address,
            "scheduler_port": info.scheduler_port,
            "network": info.network,
            "routes": info.routes,
            "secret_file": str(info.secret_file) if info.secret_file else None,
            "tls": info.tls,
            "cert_file": str(info.cert_file) if info.cert_file else None,
        },
        "containers": [
            {
                "name": c.name,
                "role": c.role,
                "state": c.state,
                "health": c.health,
                "address": c.address,
                "networks": c.networks,
            }
            for c in info.containers
        ],
        "nodes": nodes,
        "scheduler_cpus": sum(n["scheduler_cpus"] for n in nodes),
        "networks": [asdict(n) for n in info.networks],
        "volumes": info.volumes,
    }
