"""Planning a cluster across several machines (`sorctl up --host ...`): pure data, no Docker.

Layout: the scheduler on the scheduler host, one dispynode on every host (dispy keys nodes by
address, so one per machine), all with host networking (no NAT between dispy and the LAN),
each bound to the address its host uses to reach the scheduler.

Discovery is directed both ways, so no broadcast has to cross a router and no relay is needed:
each node is started with `--scheduler_host` (it announces itself over TCP when it starts), and
the scheduler is started with `--node ADDR` for every node (it pings each over TCP when it
starts, so after a scheduler restart every node is counted again without touching the nodes).
`--node '*'` keeps its broadcast on its own subnet for nodes added by hand. The members' list is
a file in the scheduler's container (names.NODES_PATH, read by the entrypoint at each start), so
`scale` changes it while the scheduler runs and a later restart pings the members of then.

Scaling (`scale --add-host/--remove-host`) is planned here too: which hosts stay, come and go,
and the index of each new node (never one a current node has).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sorctl.cluster.hosts import HostSpec
from sorctl.cluster.plan import SCHEDULER_ARGS
from sorctl.errors import ClusterError, InputError
from sorctl.names import (
    CLIENT_PORT,
    DISPY_PORT,
    LABEL_CLUSTER,
    LABEL_HOST,
    LABEL_INDEX,
    LABEL_ROLE,
    LABEL_SHAPE,
    LABEL_VERSION,
    NODE_PORT,
    NODES_PATH,
    RUN_DIR,
    container_name,
)

DISPY_PORTS = (DISPY_PORT, NODE_PORT, CLIENT_PORT)
HOSTS_FILE = "hosts.json"  # beside the cluster's secret


@dataclass(frozen=True)
class HostContainer:
    host: str  # endpoint
    name: str
    role: str  # scheduler | node
    env: dict[str, str]
    command: list[str]
    labels: dict[str, str]
    index: int = 0
    files: dict[str, bytes] = field(default_factory=dict)  # RUN_DIR name -> content (its own)


@dataclass
class HostPlan:
    name: str
    scheduler_host: str
    scheduler_address: str
    addresses: dict[str, str]  # endpoint -> the address dispy binds there
    containers: list[HostContainer] = field(default_factory=list)

    def on(self, host: str) -> list[HostContainer]:
        return [c for c in self.containers if c.host == host]

    @property
    def expected_nodes(self) -> dict[str, str]:
        """Node address -> container name: what readiness waits for."""
        return {c.env["SORCTL_HOST"]: c.name for c in self.containers if c.role == "node"}


def pick_scheduler_host(specs: list[HostSpec], wanted: str | None) -> HostSpec:
    if not specs:
        raise InputError("no --host given")
    if wanted is None:
        return specs[0]
    for spec in specs:
        if wanted in (spec.endpoint, spec.hostname):
            return spec
    raise InputError(f"--scheduler-host {wanted}: not one of the --host values")


def make_host_plan(
    name: str,
    specs: list[HostSpec],
    addresses: dict[str, str],
    scheduler_host: str,
    *,
    version: str,
    cpus_per_node: int | None = None,
    tls: bool = False,
    indexes: dict[str, int] | None = None,
    relays: list[HostSpec] | None = None,
    relayed: set[str] | None = None,
) -> HostPlan:
    """Containers for every host. addresses: endpoint -> address (found on each host, the
    relay hosts' too); indexes: endpoint -> its node's index (default: 1, 2, ... in order).
    relays: hosts that run a dispynetrelay and no node; relayed: the node hosts found through
    a relay (on a relay's subnet), which are then neither told the scheduler nor listed to it."""
    relays, relayed = relays or [], relayed or set()
    _check_plan(specs + relays, addresses, scheduler_host, cpus_per_node, relayed)
    sched_addr = addresses[scheduler_host]
    indexes = indexes or {s.endpoint: i for i, s in enumerate(specs, start=1)}
    plan = HostPlan(name, scheduler_host, sched_addr, dict(addresses))
    # the scheduler pings these when it starts: the directed nodes and the relays
    node_addrs = [addresses[s.endpoint] for s in specs if s.endpoint not in relayed]
    node_addrs += [addresses[r.endpoint] for r in relays]
    labels = labels_for(name, version, len(specs), cpus_per_node, tls)
    plan.containers.append(
        HostContainer(
            scheduler_host,
            container_name(name, "scheduler"),
            "scheduler",
            {"SORCTL_HOST": sched_addr},
            [*SCHEDULER_ARGS, "--node", "*"],
            labels("scheduler", scheduler_host),
            files={nodes_file_name(): nodes_file(node_addrs)},
        )  # fmt: skip
    )
    for spec in specs:
        plan.containers.append(
            node_container(
                name,
                spec.endpoint,
                indexes[spec.endpoint],
                addresses[spec.endpoint],
                sched_addr,
                labels,
                cpus_per_node,
                directed=spec.endpoint not in relayed,
            )  # fmt: skip
        )
    for i, relay in enumerate(relays, start=1):
        env = {"SORCTL_HOST": addresses[relay.endpoint], "SORCTL_SCHEDULER": sched_addr}
        plan.containers.append(
            HostContainer(
                relay.endpoint,
                container_name(name, "relay", i),
                "relay",
                env,
                [],
                labels("relay", relay.endpoint, i),
                i,
            )  # fmt: skip
        )
    return plan


def _check_plan(
    specs: list[HostSpec], addresses: dict[str, str], scheduler_host: str,
    cpus_per_node: int | None, relayed: set[str],
) -> None:  # fmt: skip
    """What a host plan refuses: a CPU count below one, a host without an address or sharing
    one, the scheduler's own node behind a relay."""
    if cpus_per_node is not None and cpus_per_node < 1:
        raise InputError(f"--cpus-per-node {cpus_per_node}: must be at least 1")
    for spec in specs:
        if spec.endpoint not in addresses:
            raise ClusterError(f"host {spec.label}: no address found for dispy")
    check_distinct(specs, addresses)
    if scheduler_host in relayed:
        raise ClusterError("the scheduler's own node cannot be behind a relay")


def relayed_nodes(
    specs: list[HostSpec], relays: list[HostSpec], scheduler_host: str,
    on_link: dict[str, dict[str, bool]],
) -> set[str]:  # fmt: skip
    """The node hosts found through a relay: those on a relay host's subnet (on_link: node
    endpoint -> relay endpoint -> whether the node reaches it without a router). InputError for
    a relay host on the scheduler's subnet (broadcast already finds its nodes there)."""
    for relay in relays:
        if on_link.get(scheduler_host, {}).get(relay.endpoint):
            raise InputError(
                f"--relay-host {relay.endpoint} is on the scheduler's subnet: a relay serves "
                "another subnet"
            )
    return {
        s.endpoint
        for s in specs
        if s.endpoint != scheduler_host and any(on_link.get(s.endpoint, {}).values())
    }


def on_link(route_text: str) -> bool:
    """`ip -4 -o route get ADDR` says ADDR is on the host's own subnet (no `via` a router)."""
    return bool(route_text.strip()) and " via " not in f" {route_text} "


def labels_for(name: str, version: str, hosts: int, cpus_per_node: int | None, tls: bool):
    """labels(role, host, index) for the containers of a cluster across `hosts` hosts."""
    shape = f"hosts={hosts} cpus_per_node={cpus_per_node or 0} tls={int(tls)}"

    def labels(role: str, host: str, index: int = 0) -> dict[str, str]:
        out = {LABEL_CLUSTER: name, LABEL_ROLE: role, LABEL_VERSION: version,
               LABEL_HOST: host, LABEL_SHAPE: shape}  # fmt: skip
        if index:
            out[LABEL_INDEX] = str(index)
        return out

    return labels


def node_container(
    name: str, host: str, index: int, address: str, sched_addr: str, labels,
    cpus_per_node: int | None, directed: bool = True,
) -> HostContainer:  # fmt: skip
    """A node; directed: told the scheduler's address (else a relay finds it)."""
    env = {"SORCTL_HOST": address}
    if directed:
        env["SORCTL_SCHEDULER"] = sched_addr
    if cpus_per_node:
        env["SORCTL_CPUS"] = str(cpus_per_node)
    return HostContainer(host, container_name(name, "node", index), "node", env, [],
                         labels("node", host, index), index)  # fmt: skip


def check_distinct(specs: list[HostSpec], addresses: dict[str, str]) -> None:
    seen: dict[str, str] = {}
    for spec in specs:
        addr = addresses[spec.endpoint]
        if addr in seen:
            raise InputError(
                f"hosts {seen[addr]} and {spec.label} have the same address {addr}: dispy "
                "keys nodes by address (one node per machine)"
            )
        seen[addr] = spec.label


def nodes_file_name() -> str:
    """The members' file, as a name under RUN_DIR (where the material goes)."""
    return NODES_PATH.removeprefix(RUN_DIR + "/")


def nodes_file(addresses: list[str]) -> bytes:
    """What the scheduler's entrypoint reads: one `--node` address a line (its command line
    has `--node '*'` for its own subnet's broadcast)."""
    return "".join(f"{a}\n" for a in addresses).encode()


# ---- scale: hosts added to and removed from a cluster that runs


@dataclass
class ScalePlan:
    kept: list[HostSpec]  # hosts that stay (the scheduler's among them)
    added: list[HostSpec]
    removed: list[HostSpec]
    indexes: dict[str, int]  # endpoint -> node index, for the kept and the added hosts

    @property
    def after(self) -> list[HostSpec]:
        return self.kept + self.added


def plan_scale(
    specs: list[HostSpec], record: dict, add: list[HostSpec], remove: list[str]
) -> ScalePlan:
    """Which hosts stay, come and go; InputError for a request that cannot be done (nothing
    asked, a host already there or not there, the scheduler's host removed)."""
    if not add and not remove:
        raise InputError("scale: give --add-host ENDPOINT[=ADDRESS] or --remove-host ENDPOINT")
    if record.get("relays"):
        raise InputError(
            "scale: this cluster has relay hosts, and scaling one is not supported yet: "
            "`sorctl down` it and `sorctl up` with the hosts you want"
        )
    by_endpoint = {s.endpoint: s for s in specs}
    seen: set[str] = set()
    for spec in add:
        if spec.endpoint in by_endpoint:
            raise InputError(f"--add-host {spec.endpoint}: already a host of the cluster")
        if spec.endpoint in seen:
            raise InputError(f"--add-host {spec.endpoint} is given twice")
        seen.add(spec.endpoint)
    gone: list[HostSpec] = []
    for endpoint in remove:
        member = by_endpoint.get(endpoint) or next(
            (s for s in specs if s.hostname and s.hostname == endpoint), None
        )
        if member is None:
            raise InputError(
                f"--remove-host {endpoint}: not a host of the cluster ({', '.join(by_endpoint)})"
            )
        if member.endpoint == record["scheduler_host"]:
            raise InputError(
                f"--remove-host {endpoint}: it runs the scheduler; `sorctl down` the cluster and "
                "`sorctl up` it elsewhere"
            )
        if member in gone:
            raise InputError(f"--remove-host {endpoint} is given twice")
        gone.append(member)
    indexes = host_indexes(record)
    kept = [s for s in specs if s not in gone]
    nxt = max(indexes.values(), default=0) + 1
    out = {s.endpoint: indexes[s.endpoint] for s in kept}
    for i, spec in enumerate(add):
        out[spec.endpoint] = nxt + i
    return ScalePlan(kept, list(add), gone, out)


def host_indexes(record: dict) -> dict[str, int]:
    """endpoint -> its node's index, as kept in the host list (1, 2, ... for a list without)."""
    return {h["endpoint"]: int(h.get("index") or i)
            for i, h in enumerate(record["hosts"], start=1)}  # fmt: skip


# ---- what a probe container prints on a host: `ip -4 -o route get ADDR`, /proc/net/{tcp,udp}


def route_source(text: str) -> str | None:
    """The `src` address of `ip -4 -o route get` output."""
    m = re.search(r"\bsrc (\d+\.\d+\.\d+\.\d+)", text)
    return m[1] if m else None


def ports_in_use(proc_net: str, ports=DISPY_PORTS) -> list[int]:
    """Ports among `ports` that something binds, from /proc/net/tcp (listening) and udp."""
    busy = set()
    for line in proc_net.splitlines():
        parts = line.split()
        if len(parts) < 4 or ":" not in parts[1]:
            continue
        try:
            port = int(parts[1].rsplit(":", 1)[1], 16)
        except ValueError:
            continue
        # tcp: state 0A is LISTEN; udp sockets show 07 (unconnected): both are a bind
        if port in ports and parts[3] in ("0A", "07"):
            busy.add(port)
    return sorted(busy)


def check_address(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise InputError(f"{text!r} is not an IPv4 address") from None


# ---- the host list, kept beside the secret


def save_hosts(
    directory: Path,
    plan: HostPlan,
    specs: list[HostSpec],
    tls: list[str] | None = None,
    firewall: bool = True,
    *,
    cpus_per_node: int | None = None,
    dispy_tls: bool = False,
    relays: list[HostSpec] | None = None,
) -> None:
    """The host list (with each node's index, and the paths of the TLS client files `up`
    used), 0600; what `scale` needs to add a node like the others."""
    index = {c.host: c.index for c in plan.containers if c.role == "node"}
    data = {
        "tls": tls,
        "firewall": firewall,
        "cpus_per_node": cpus_per_node,
        "dispy_tls": dispy_tls,
        "scheduler_host": plan.scheduler_host,
        "scheduler_address": plan.scheduler_address,
        "hosts": [
            {**asdict(s), "address": plan.addresses[s.endpoint], "index": index.get(s.endpoint)}
            for s in specs
        ],
        "relays": [{**asdict(r), "address": plan.addresses[r.endpoint]} for r in relays or []],
    }
    path = directory / HOSTS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.chmod(0o600)
    tmp.replace(path)


def relay_hosts(record: dict) -> list[HostSpec]:
    """The relay hosts kept in a host list (none for a list without)."""
    return [HostSpec(h["endpoint"], h["kind"], h["hostname"], h.get("address"))
            for h in record.get("relays") or []]  # fmt: skip


def load_hosts(directory: Path) -> tuple[list[HostSpec], dict] | None:
    """(the hosts, the whole record), or None for a single-engine cluster."""
    path = directory / HOSTS_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    specs = [
        HostSpec(h["endpoint"], h["kind"], h["hostname"], h.get("address")) for h in data["hosts"]
    ]
    return specs, data
