"""Planning a cluster across several machines (`sorctl up --host ...`): pure data, no Docker.

Layout: the scheduler on the scheduler host, one dispynode on every host (dispy keys nodes by
address, so one per machine), all with host networking (no NAT between dispy and the LAN),
each bound to the address its host uses to reach the scheduler.

Discovery is directed both ways, so no broadcast has to cross a router and no relay is needed:
each node is started with `--scheduler_host` (it announces itself over TCP when it starts), and
the scheduler is started with `--node ADDR` for every node (it pings each over TCP when it
starts, so after a scheduler restart every node is counted again without touching the nodes).
`--node '*'` keeps its broadcast on its own subnet for nodes added by hand.
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
) -> HostPlan:
    """Containers for every host. addresses: endpoint -> address (found on each host)."""
    if cpus_per_node is not None and cpus_per_node < 1:
        raise InputError(f"--cpus-per-node {cpus_per_node}: must be at least 1")
    for spec in specs:
        if spec.endpoint not in addresses:
            raise ClusterError(f"host {spec.label}: no address found for dispy")
    seen: dict[str, str] = {}
    for spec in specs:
        addr = addresses[spec.endpoint]
        if addr in seen:
            raise InputError(
                f"hosts {seen[addr]} and {spec.label} have the same address {addr}: dispy "
                "keys nodes by address (one node per machine)"
            )
        seen[addr] = spec.label
    sched_addr = addresses[scheduler_host]
    shape = f"hosts={len(specs)} cpus_per_node={cpus_per_node or 0} tls={int(tls)}"

    def labels(role: str, host: str, index: int = 0) -> dict[str, str]:
        out = {LABEL_CLUSTER: name, LABEL_ROLE: role, LABEL_VERSION: version,
               LABEL_HOST: host, LABEL_SHAPE: shape}  # fmt: skip
        if index:
            out[LABEL_INDEX] = str(index)
        return out

    plan = HostPlan(name, scheduler_host, sched_addr, dict(addresses))
    node_addrs = [addresses[s.endpoint] for s in specs]
    command = [*SCHEDULER_ARGS, "--node", "*"]
    for addr in node_addrs:
        command += ["--node", addr]
    plan.containers.append(
        HostContainer(
            scheduler_host,
            container_name(name, "scheduler"),
            "scheduler",
            {"SORCTL_HOST": sched_addr},
            command,
            labels("scheduler", scheduler_host),
        )  # fmt: skip
    )
    for i, spec in enumerate(specs, start=1):
        env = {"SORCTL_HOST": addresses[spec.endpoint], "SORCTL_SCHEDULER": sched_addr}
        if cpus_per_node:
            env["SORCTL_CPUS"] = str(cpus_per_node)
        plan.containers.append(
            HostContainer(
                spec.endpoint,
                container_name(name, "node", i),
                "node",
                env,
                [],
                labels("node", spec.endpoint, i),
                i,
            )  # fmt: skip
        )
    return plan


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
) -> None:
    """The host list (and the paths of the TLS client files `up` used), 0600."""
    data = {
        "tls": tls,
        "firewall": firewall,
        "scheduler_host": plan.scheduler_host,
        "scheduler_address": plan.scheduler_address,
        "hosts": [{**asdict(s), "address": plan.addresses[s.endpoint]} for s in specs],
    }
    path = directory / HOSTS_FILE
    path.write_text(json.dumps(data, indent=1))
    path.chmod(0o600)


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
