"""Creating and removing a cluster's engine objects, for one engine and for each host of a
cluster across hosts: a plan's networks and containers, a host plan's containers (host
networking), the cluster's files put into them, waiting until the scheduler counts the nodes
(failing early on a container that exited), and removal by the cluster's label.

(Short-lived helper containers are not cluster objects: the packet filter's in engine.firewall,
the route probes in engine.multihost, a solve's client in engine.solve_container.)"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from sorctl.cluster.hostplan import HostContainer
from sorctl.cluster.material import Material
from sorctl.cluster.plan import ContainerSpec, NetworkSpec, Plan
from sorctl.cluster.readiness import SchedulerView, missing_nodes
from sorctl.engine import observe
from sorctl.engine.fanout import parallel
from sorctl.engine.images import image_ref
from sorctl.errors import ClusterError
from sorctl.names import DISPY_PORT, LABEL_CLUSTER, NODE_PORT, RUN_DIR, RUN_UID


class Reporter:
    """Progress sink of up and scale, for either provider; the CLI draws it with rich on
    stderr, tests leave it silent."""

    def step(self, text: str) -> None:  # one phase: "creating networks", ...
        pass

    def nodes(self, found: int, total: int) -> None:  # scheduler's count while waiting
        pass

    def sent(self, host: str, sent: int) -> None:  # across hosts: image bytes sent to a host
        pass


@dataclass
class Created:
    """What this run made, so a failed or interrupted run can take exactly that away."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)


def run_dir_tar(files: dict[str, bytes]) -> bytes:
    """A tar of RUN_DIR with `files` (name -> content) in it, readable by the images' user only
    (the secret and TLS material of daemons and of a solve's client)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo(RUN_DIR.rsplit("/", 1)[1])
        top.type, top.mode, top.uid, top.gid = tarfile.DIRTYPE, 0o700, RUN_UID, RUN_UID
        tar.addfile(top)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top.name}/{name}")
            info.size, info.mode, info.uid, info.gid = len(data), 0o400, RUN_UID, RUN_UID
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put_files(client: docker.DockerClient, container: str, files: dict[str, bytes]) -> None:
    """`files` (RUN_DIR name -> content) into the container's RUN_DIR, replacing those there."""
    client.api.put_archive(container, RUN_DIR.rsplit("/", 1)[0], run_dir_tar(files))


def create_network(client: docker.DockerClient, spec: NetworkSpec) -> None:
    pool = IPAMPool(subnet=spec.subnet, gateway=spec.gateway, iprange=spec.ip_range)
    client.networks.create(
        spec.name,
        driver="bridge",
        ipam=IPAMConfig(pool_configs=[pool]),
        labels=spec.labels,
        check_duplicate=True,
    )


def create_container(client: docker.DockerClient, spec: ContainerSpec, material: Material) -> None:
    api = client.api
    first_net, first_ip = spec.networks[0]
    host_config = api.create_host_config(
        cap_add=list(spec.cap_add) or None,
        sysctls=spec.sysctls or None,
    )
    networking = api.create_networking_config(
        {first_net: api.create_endpoint_config(ipv4_address=first_ip)}
    )
    api.create_container(
        spec.image,
        name=spec.name,
        hostname=spec.name,
        command=list(spec.command) or None,
        environment=spec.env,
        labels=spec.labels,
        host_config=host_config,
        networking_config=networking,
        detach=True,
    )
    # API 1.41 (Docker 20.10) takes one network at create time; the router joins the rest here.
    for net, ip in spec.networks[1:]:
        api.connect_container_to_network(spec.name, net, ipv4_address=ip)
    if spec.files:
        wanted = {path.rsplit("/", 1)[1] for path in spec.files}
        put_files(client, spec.name, {k: v for k, v in material.files().items() if k in wanted})


def create_host_container(
    client: docker.DockerClient, c: HostContainer, files: dict[str, bytes]
) -> None:
    """One container of a host plan, with the host's networking, its files in, started."""
    role = c.role if c.role in ("scheduler", "relay") else "node"
    client.api.create_container(
        image_ref(role), name=c.name, hostname=c.name, command=c.command or None,
        environment=c.env, labels=c.labels, detach=True,
        host_config=client.api.create_host_config(network_mode="host"),
    )  # fmt: skip
    put_files(client, c.name, {**files, **c.files})
    client.api.start(c.name)


def _parallel(fn: Callable[[str], None], items: Iterable[str]) -> None:
    parallel(fn, items, max_threads=8)


def create_containers(
    client, specs: list[ContainerSpec], material: Material, created: Created
) -> None:
    def make(name: str) -> None:
        spec = next(s for s in specs if s.name == name)
        create_container(client, spec, material)

    # Register names before creating so that an interrupted create is still cleaned up.
    created.containers.extend(s.name for s in specs)
    _parallel(make, [s.name for s in specs])


def start(client, specs: list[ContainerSpec]) -> None:
    _parallel(lambda n: client.api.start(n), [s.name for s in specs])


def wait_listening(client, container: str, address: str, port: int, deadline: float) -> None:
    """Wait until `address:port` accepts TCP, probed from inside `container` (its netns)."""
    probe = ["bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"]
    while True:
        try:
            res = client.api.exec_create(container, probe, user="sorctl")
            client.api.exec_start(res["Id"])
            if client.api.exec_inspect(res["Id"]).get("ExitCode") == 0:
                return
        except docker.errors.APIError:  # not running yet, or stopped (checked next)
            pass
        fail_if_exited(client, [container])
        if time.monotonic() > deadline:
            tail = "\n    ".join(observe.last_log_lines(client, container))
            raise ClusterError(
                f"not ready before the deadline (--timeout): {container} does not accept "
                f"connections on {address}:{port} yet; last log lines:\n    {tail}"
            )
        time.sleep(0.2)


def fail_if_exited(client, names: Iterable[str], host: str | None = None) -> None:
    """ClusterError for the first of `names` that exited (one query for them all: this is
    polled several times a second while waiting). host: the endpoint, for a cluster across
    hosts, which then gets it in one line."""
    ours = set(names)
    filters = {"label": LABEL_CLUSTER, "status": ["exited", "dead"]}
    for row in client.api.containers(all=True, filters=filters):
        name = row["Names"][0].lstrip("/")
        if name not in ours:
            continue
        lines = observe.last_log_lines(client, name, 3 if host else 5)
        if host:
            last = " | ".join(x.strip() for x in lines if x.strip())
            raise ClusterError(f"host {host}: {name} exited ({last})")
        code = client.api.inspect_container(name)["State"].get("ExitCode")
        tail = "\n    ".join(lines)
        raise ClusterError(f"container {name} exited (code {code}):\n    {tail}")


def wait_view(
    read: Callable[[], SchedulerView],
    done: Callable[[SchedulerView], bool],
    deadline: float,
    timeout_error: Callable[[SchedulerView], ClusterError],
    *,
    check: Callable[[], None] = lambda: None,
    seen: Callable[[SchedulerView], None] = lambda view: None,
    poll_s: float = 0.25,
) -> SchedulerView:
    """Read the scheduler's table until done(view); between reads check() (which raises for a
    container that exited), and after the deadline timeout_error(view) is raised. seen(view)
    gets every table read (progress)."""
    while True:
        view = read()
        seen(view)
        if done(view):
            return view
        check()
        if time.monotonic() > deadline:
            raise timeout_error(view)
        time.sleep(poll_s)


def wait_nodes(
    client,
    plan: Plan,
    node_specs: list[ContainerSpec],
    since: float,
    deadline: float,
    reporter: Reporter,
) -> None:
    """Wait until the scheduler counts every node in `node_specs` with its CPUs."""
    expected = {s.address: s.name for s in node_specs}
    info = observe.find_cluster(client, plan.name)
    assert info is not None
    ours = [c.name for c in plan.containers]

    def missing(view: SchedulerView) -> list[str]:
        return missing_nodes(view, expected, since)

    def not_ready(view: SchedulerView) -> ClusterError:
        gone = missing(view)
        parts = [
            f"cluster {plan.name!r} not ready: the scheduler counts "
            f"{len(expected) - len(gone)} of {len(expected)} node(s); missing:"
        ]
        mismatched = observe.scheduler_secret_mismatches(client, info)
        for name in gone:
            addr = next(a for a, n in expected.items() if n == name)
            hint = " (secret mismatch)" if addr in mismatched else ""
            parts.append(f"  {name} ({addr}){hint}, last log lines:")
            parts.extend(f"    {line}" for line in observe.last_log_lines(client, name))
        return ClusterError("\n".join(parts))

    wait_view(
        lambda: observe.scheduler_view(client, info),
        lambda view: not missing(view),
        deadline,
        not_ready,
        check=lambda: fail_if_exited(client, ours),
        seen=lambda view: reporter.nodes(len(expected) - len(missing(view)), len(expected)),
    )


def bring_up(
    client,
    plan: Plan,
    material: Material,
    *,
    timeout: float,
    reporter: Reporter,
    created: Created,
) -> None:
    """Create and start everything in `plan`, then wait for the scheduler to count the nodes."""
    deadline = time.monotonic() + timeout
    reporter.step("creating networks")
    for net in plan.networks:
        created.networks.append(net.name)
        create_network(client, net)
    reporter.step("creating containers")
    create_containers(client, list(plan.containers), material, created)
    since = time.time()  # a node counted before this is an earlier one at the same address
    first, relays = plan.start_groups()
    reporter.step("starting containers")
    start(client, first)
    if relays:
        # A relay announces the scheduler once, when it starts, by a TCP call to the
        # scheduler and a broadcast to its subnet: both ends must be listening by then.
        reporter.step("waiting for the scheduler and nodes to listen")
        listeners = [(c.name, c.address, DISPY_PORT) for c in plan.role("scheduler")]
        listeners += [(c.name, c.address, NODE_PORT) for c in plan.role("node")]
        parallel(lambda x: wait_listening(client, *x, deadline), listeners, max_threads=8)
        reporter.step("starting relays")
        start(client, relays)
    reporter.step("waiting for the scheduler to count the nodes")
    wait_nodes(client, plan, plan.role("node"), since, deadline, reporter)


def add_nodes(
    client,
    plan: Plan,
    names: list[str],
    material: Material,
    *,
    timeout: float,
    reporter: Reporter,
    created: Created,
) -> None:
    """Start the node containers `names` of `plan` and wait until the scheduler counts them."""
    deadline = time.monotonic() + timeout
    specs = [c for c in plan.containers if c.name in names]
    since = time.time()
    reporter.step(f"starting {len(specs)} node(s)")
    create_containers(client, specs, material, created)
    start(client, specs)
    wait_nodes(client, plan, specs, since, deadline, reporter)


def remove_containers(client, names: Iterable[str]) -> None:
    def rm(name: str) -> None:
        try:
            client.api.remove_container(name, force=True, v=True)
        except docker.errors.NotFound:
            pass

    _parallel(rm, names)


def remove_networks(client, names: Iterable[str]) -> None:
    for name in names:
        try:
            client.networks.get(name).remove()
        except docker.errors.NotFound:
            pass


def undo(client, created: Created) -> None:
    remove_containers(client, created.containers)
    remove_networks(client, created.networks)


def remove_cluster(client, name: str) -> dict[str, int]:
    """Remove every container, network and volume labelled with cluster `name`."""
    f = {"label": f"{LABEL_CLUSTER}={name}"}
    containers = [row["Id"] for row in client.api.containers(all=True, filters=f)]
    remove_containers(client, containers)
    networks = client.networks.list(filters=f)
    for n in networks:
        try:
            n.remove()
        except docker.errors.NotFound:
            pass
    volumes = client.volumes.list(filters=f)
    for v in volumes:
        v.remove(force=True)
    return {"containers": len(containers), "networks": len(networks), "volumes": len(volumes)}
