"""Cluster plans: plain data computed from the CLI options by pure functions (no Docker here).

A plan names every network (with its subnet) and every container (role, image, addresses,
environment, labels, sysctls, capabilities) of one cluster. `apply` walks it; `observe` reads
the engine back into the same names and labels.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sorctl.names import (
    CERT_PATH,
    KEY_PATH,
    LABEL_CLUSTER,
    LABEL_INDEX,
    LABEL_ROLE,
    LABEL_SHAPE,
    LABEL_VERSION,
    SECRET_PATH,
    container_name,
    network_name,
)

# Private /24s come from these pools, skipping everything the engine or the host already uses.
SUBNET_POOLS = ("10.213.0.0/16", "10.214.0.0/16")
# Host parts inside each /24: Docker's bridge takes .1; clients started later (sorctl solve,
# user programs) get dynamic addresses from CLIENT_RANGE, away from the static ones.
SCHEDULER_HOST = 2
RELAY_HOST = 3
FIRST_NODE_HOST = 11
MAX_NODES_PER_SUBNET = 100
CLIENT_RANGE = (128, 26)  # .128/26 -> .128-.191
ROUTER_HOST = 254

# -d: the scheduler's log says which nodes it counts and drops (`sorctl logs scheduler`);
# readiness reads the table images/run-daemon.py publishes instead, which does not rotate.
# --pulse_interval 1: a killed node is dropped after ~5 s (SharedJobCluster clients cannot ask
# for it themselves), so jobs on it are reported instead of hanging.
SCHEDULER_ARGS = ("-d", "--pulse_interval", "1")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,29}$")


class PlanError(ValueError):
    """Options that cannot make a cluster (bad counts, no free subnet, bad name)."""


@dataclass(frozen=True)
class Shape:
    """What a cluster is made of; two `up`s with the same shape are the same cluster."""

    nodes: int = 2
    relay: bool = False
    subnets: int = 1
    cpus_per_node: int = 1
    tls: bool = False

    def label(self) -> str:
        return (
            f"relay={int(self.relay)} subnets={self.subnets} "
            f"cpus={self.cpus_per_node} tls={int(self.tls)}"
        )

    @classmethod
    def from_label(cls, text: str, nodes: int) -> Shape:
        vals = dict(part.split("=", 1) for part in text.split())
        return cls(
            nodes=nodes,
            relay=vals.get("relay") == "1",
            subnets=int(vals.get("subnets", "1")),
            cpus_per_node=int(vals.get("cpus", "1")),
            tls=vals.get("tls") == "1",
        )

    def describe(self) -> str:
        layout = f"relay over {self.subnets} remote subnet(s)" if self.relay else "single network"
        tls = ", TLS" if self.tls else ""
        return f"{self.nodes} node(s) x {self.cpus_per_node} cpu(s), {layout}{tls}"


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    role: str  # "net" (single layout), "lan" or "remote"
    subnet: str
    gateway: str
    ip_range: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    role: str  # scheduler, node, relay, router
    index: int  # 1-based for nodes and relays, 0 otherwise
    image: str
    # (network name, static IPv4) pairs; the first is the container's own address.
    networks: tuple[tuple[str, str], ...]
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    cap_add: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # material to put under RUN_DIR before start
    command: tuple[str, ...] = ()  # appended to the daemon's flags by the image's entrypoint

    @property
    def address(self) -> str:
        return self.networks[0][1]


@dataclass(frozen=True)
class Plan:
    name: str
    shape: Shape
    networks: tuple[NetworkSpec, ...]
    containers: tuple[ContainerSpec, ...]

    def role(self, role: str) -> list[ContainerSpec]:
        return [c for c in self.containers if c.role == role]

    @property
    def scheduler(self) -> ContainerSpec:
        return self.role("scheduler")[0]

    def start_groups(self) -> tuple[list[ContainerSpec], list[ContainerSpec]]:
        """(everything else, relays): a relay announces the scheduler once, when it starts,
        so relays start only once the scheduler and the nodes listen. Routes need no order:
        the gateway is on-link whether the router runs yet or not."""
        return [c for c in self.containers if c.role != "relay"], self.role("relay")


def check_nodes(nodes: int) -> None:
    if nodes < 1:
        raise PlanError(f"--nodes {nodes}: need at least 1 node")


def validate(name: str, shape: Shape) -> None:
    if not NAME_RE.match(name):
        raise PlanError(
            f"cluster name {name!r}: use 1-30 lower-case letters, digits or '-', "
            "starting with a letter or digit"
        )
    check_nodes(shape.nodes)
    if shape.cpus_per_node < 1:
        raise PlanError(f"--cpus-per-node {shape.cpus_per_node}: need at least 1")
    if shape.subnets < 1:
        raise PlanError(f"--subnets {shape.subnets}: need at least 1")
    if shape.subnets > 1 and not shape.relay:
        raise PlanError("--subnets needs --relay (remote subnets are reached through relays)")
    if shape.subnets > shape.nodes:
        raise PlanError(f"--subnets {shape.subnets} > --nodes {shape.nodes}: empty subnets")
    if shape.nodes > MAX_NODES_PER_SUBNET * shape.subnets:
        raise PlanError(f"--nodes {shape.nodes}: at most {MAX_NODES_PER_SUBNET} nodes per subnet")


def pick_subnets(count: int, used: Iterable[str], seed: str) -> list[str]:
    """`count` free /24s from SUBNET_POOLS that overlap nothing in `used`.

    The search starts at an offset derived from `seed` (the cluster name) so that clusters
    planned at the same moment rarely pick the same subnets.
    """
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    candidates = [
        net for pool in SUBNET_POOLS for net in ipaddress.ip_network(pool).subnets(new_prefix=24)
    ]
    start = zlib.crc32(seed.encode()) % len(candidates)
    picked: list[str] = []
    for net in candidates[start:] + candidates[:start]:
        if any(net.overlaps(t) for t in taken if t.version == 4):
            continue
        picked.append(str(net))
        if len(picked) == count:
            return picked
    raise PlanError(f"no free /24 left in {', '.join(SUBNET_POOLS)} for {count} network(s)")


def _host(subnet: str, host: int) -> str:
    return str(ipaddress.ip_network(subnet)[host])


def _network(name: str, role: str, subnet: str, labels: dict[str, str]) -> NetworkSpec:
    offset, prefix = CLIENT_RANGE
    ip_range = f"{_host(subnet, offset)}/{prefix}"
    return NetworkSpec(
        name=name,
        role=role,
        subnet=subnet,
        gateway=_host(subnet, 1),
        ip_range=ip_range,
        labels={**labels, LABEL_ROLE: role},
    )


def node_slot(index: int, subnets: int) -> tuple[int, int]:
    """Where node `index` (1-based) lives: (remote subnet 1..K, host part). Round robin, so
    growing or shrinking the cluster only adds or removes the highest indices."""
    return (index - 1) % subnets + 1, FIRST_NODE_HOST + (index - 1) // subnets


def routes_env(routes: Iterable[tuple[str, str]]) -> str:
    """SORCTL_ROUTES text: "SUBNET via GATEWAY" pairs joined by commas."""
    return ",".join(f"{subnet} via {gw}" for subnet, gw in routes)


def make_plan(
    name: str,
    shape: Shape,
    images: Mapping[str, str],
    *,
    used_subnets: Iterable[str] = (),
    existing_subnets: Mapping[str, str] | None = None,
    version: str = "0",
    relay_daemons: bool = True,
) -> Plan:
    """The full plan for cluster `name`.

    used_subnets: subnets of every existing network and host route (to avoid).
    existing_subnets: network name -> subnet of this cluster's networks that already exist
      (scale keeps them). relay_daemons=False plans the relay layout without its relays
      (the negative test: nothing should be discovered then).
    """
    validate(name, shape)
    base_labels = {LABEL_CLUSTER: name, LABEL_VERSION: version, LABEL_SHAPE: shape.label()}
    networks = _networks(name, shape, used_subnets, dict(existing_subnets or {}), base_labels)
    make = _ContainerMaker(name, shape, images, base_labels)
    if shape.relay:
        containers = _relay_layout(make, shape, networks, relay_daemons)
    else:
        containers = _single_layout(make, shape, networks[0])
    return Plan(name, shape, networks, tuple(containers))


def _networks(
    name: str, shape: Shape, used_subnets: Iterable[str], existing: dict[str, str],
    labels: dict[str, str],
) -> tuple[NetworkSpec, ...]:  # fmt: skip
    """The lan and one network per remote subnet (relay layout), or the one net; the subnets
    of those that exist kept, fresh ones for the others."""
    if shape.relay:
        net_names = [network_name(name, "lan")] + [
            network_name(name, "remote", k) for k in range(1, shape.subnets + 1)
        ]
        net_roles = ["lan"] + ["remote"] * shape.subnets
    else:
        net_names, net_roles = [network_name(name, "net")], ["net"]
    missing = [n for n in net_names if n not in existing]
    avoid = [*used_subnets, *existing.values()]
    fresh = iter(pick_subnets(len(missing), avoid, name) if missing else [])
    subnets = {n: existing.get(n) or next(fresh) for n in net_names}
    return tuple(
        _network(n, r, subnets[n], labels) for n, r in zip(net_names, net_roles, strict=True)
    )


class _ContainerMaker:
    """The ContainerSpec of a daemon (scheduler, node, relay): image, environment (its address,
    the secret's files, routes), labels, the files it gets."""

    def __init__(self, name: str, shape: Shape, images: Mapping[str, str],
                 labels: dict[str, str]) -> None:  # fmt: skip
        self.name, self.images, self.labels = name, images, labels
        self.files = (SECRET_PATH, CERT_PATH, KEY_PATH) if shape.tls else (SECRET_PATH,)
        self.env = {"SORCTL_SECRET_FILE": SECRET_PATH}
        if shape.tls:
            self.env |= {"SORCTL_CERTFILE": CERT_PATH, "SORCTL_KEYFILE": KEY_PATH}
        self.node_env = {"SORCTL_CPUS": str(shape.cpus_per_node)}

    def __call__(
        self,
        role: str,
        index: int,
        nets: list[tuple[str, str]],
        env: dict[str, str],
        routes: Sequence[tuple[str, str]] = (),
    ) -> ContainerSpec:
        full_env = {**self.env, "SORCTL_HOST": nets[0][1], **env}
        if routes:
            full_env["SORCTL_ROUTES"] = routes_env(routes)
        return ContainerSpec(
            name=container_name(self.name, role, index),
            role=role,
            index=index,
            image=self.images[role],
            networks=tuple(nets),
            env=full_env,
            labels={**self.labels, LABEL_ROLE: role, LABEL_INDEX: str(index)},
            cap_add=("NET_ADMIN",) if routes else (),
            files=self.files,
            command=SCHEDULER_ARGS if role == "scheduler" else (),
        )


def _single_layout(make: _ContainerMaker, shape: Shape, net: NetworkSpec) -> list[ContainerSpec]:
    """The scheduler and every node on one network."""
    out = [make("scheduler", 0, [(net.name, _host(net.subnet, SCHEDULER_HOST))], {})]
    for i in range(1, shape.nodes + 1):
        addr = _host(net.subnet, FIRST_NODE_HOST + i - 1)
        out.append(make("node", i, [(net.name, addr)], make.node_env))
    return out


def _relay_layout(
    make: _ContainerMaker, shape: Shape, networks: tuple[NetworkSpec, ...], relay_daemons: bool
) -> list[ContainerSpec]:
    """The router on every network, the scheduler on the lan, the nodes round robin on the
    remote subnets, and a relay on each remote subnet (unless not relay_daemons)."""
    lan, remotes = networks[0], networks[1:]
    sched_addr = _host(lan.subnet, SCHEDULER_HOST)
    router_on = {n.name: _host(n.subnet, ROUTER_HOST) for n in networks}
    lan_routes = [(r.subnet, router_on[lan.name]) for r in remotes]

    def remote_routes(remote: NetworkSpec) -> list[tuple[str, str]]:
        return [(n.subnet, router_on[remote.name]) for n in networks if n is not remote]

    out = [
        ContainerSpec(
            name=container_name(make.name, "router"),
            role="router",
            index=0,
            image=make.images["router"],
            networks=tuple((n.name, router_on[n.name]) for n in networks),
            labels={**make.labels, LABEL_ROLE: "router", LABEL_INDEX: "0"},
            sysctls={"net.ipv4.ip_forward": "1"},
        ),
        make("scheduler", 0, [(lan.name, sched_addr)], {}, lan_routes),
    ]
    for i in range(1, shape.nodes + 1):
        k, host = node_slot(i, shape.subnets)
        remote = remotes[k - 1]
        addr = _host(remote.subnet, host)
        out.append(make("node", i, [(remote.name, addr)], make.node_env, remote_routes(remote)))
    if relay_daemons:
        for k, remote in enumerate(remotes, start=1):
            addr = _host(remote.subnet, RELAY_HOST)
            out.append(make("relay", k, [(remote.name, addr)], {"SORCTL_SCHEDULER": sched_addr},
                            remote_routes(remote)))  # fmt: skip
    return out
