"""Walks a plan with the Docker SDK: the only code that creates or removes engine objects."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from sorctl.cluster.material import Material
from sorctl.cluster.plan import (
    ContainerSpec,
    NetworkSpec,
    Plan,
)
from sorctl.cluster.readiness import missing_nodes
from sorctl.engine import observe
from sorctl.errors import ClusterError
from sorctl.names import DISPY_PORT, LABEL_CLUSTER, NODE_PORT, RUN_DIR, RUN_UID


class Reporter:
    """Progress sink; the CLI draws it with rich on stderr, tests leave it silent."""

    def step(self, text: str) -> None:  # one phase: "creating networks", ...
        pass

    def nodes(self, found: int, total: int) -> None:  # scheduler's count while waiting
        pass


@dataclass
class Created:
    """What this run made, so a failed or interrupted run can take exactly that away."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)


def _material_tar(files: dict[str, bytes]) -> bytes:
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
        files = {k: v for k, v in material.files().items() if k in wanted}
        api.put_archive(spec.name, RUN_DIR.rsplit("/", 1)[0], _material_tar(files))


def _parallel(fn: Callable[[str], None], items: Iterable[str]) -> None:
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        for fut in [pool.submit(fn, i) for i in items]:
            fut.result()


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
        _fail_if_exited(client, container)
        if time.monotonic() > deadline:
            tail = "\n    ".join(observe.last_log_lines(client, container))
            raise ClusterError(
                f"not ready before the deadline (--timeout): {container} does not accept "
                f"connections on {address}:{port} yet; last log lines:\n    {tail}"
            )
        time.sleep(0.2)


def _fail_if_exited(client, name: str) -> None:
    c = client.containers.get(name)
    if c.status in ("exited", "dead"):
        tail = "\n    ".join(observe.last_log_lines(client, name))
        raise ClusterError(
            f"container {name} exited (code {c.attrs['State'].get('ExitCode')}):\n    {tail}"
        )


def _fail_if_any_exited(client, plan: Plan) -> None:
    """One query for the whole plan (polled several times a second while waiting)."""
    filters = {"label": f"{LABEL_CLUSTER}={plan.name}", "status": ["exited", "dead"]}
    ours = {c.name for c in plan.containers}
    for row in client.api.containers(all=True, filters=filters):
        name = row["Names"][0].lstrip("/")
        if name in ours:
            _fail_if_exited(client, name)


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
    while True:
        missing = missing_nodes(observe.scheduler_view(client, info), expected, since)
        reporter.nodes(len(expected) - len(missing), len(expected))
        if not missing:
            return
        _fail_if_any_exited(client, plan)
        if time.monotonic() > deadline:
            parts = [
                f"cluster {plan.name!r} not ready: the scheduler counts "
                f"{len(expected) - len(missing)} of {len(expected)} node(s); missing:"
            ]
            mismatched = observe.scheduler_secret_mismatches(client, info)
            for name in missing:
                addr = next(a for a, n in expected.items() if n == name)
                hint = " (secret mismatch)" if addr in mismatched else ""
                parts.append(f"  {name} ({addr}){hint}, last log lines:")
                parts.extend(f"    {line}" for line in observe.last_log_lines(client, name))
            raise ClusterError("\n".join(parts))
        time.sleep(0.25)


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
        with ThreadPoolExecutor(max_workers=8) as pool:
            for fut in [pool.submit(wait_listening, client, *x, deadline) for x in listeners]:
                fut.result()
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
