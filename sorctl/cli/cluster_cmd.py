"""`sorctl up / status / logs / down / scale`: flags in, sorctl.Cluster calls, answers on stdout."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sorctl import api
from sorctl.api import READY_TIMEOUT_S, Cluster, Reporter, clusters
from sorctl.cli import doctor_cmd, hosts_cmd
from sorctl.cluster.plan import Shape
from sorctl.errors import ClusterError, EngineError, ImageError, InputError, PortsTakenError
from sorctl.names import DEFAULT_CLUSTER

err = Console(stderr=True)
# Piped or captured output keeps whole rows instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)

NameOpt = Annotated[
    str, typer.Option("--name", "-n", help="Cluster name (several can run side by side).")
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the scheduler to count every node.")
]


class RichReporter(Reporter):
    """Spinner, phase text and the scheduler's node count, on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=None)
        self.phase = "starting"

    def step(self, text: str) -> None:
        self.phase = text
        self.progress.update(self.task, description=text)

    def nodes(self, found: int, total: int) -> None:
        self.progress.update(self.task, description=f"{self.phase}: {found}/{total}")


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _connect_line(status: dict) -> str:
    conn = status["connect"]
    return (
        f"scheduler {conn['scheduler_address']}:{conn['scheduler_port']} "
        f"(SharedJobCluster) on network {conn['network']}"
    )


@contextlib.contextmanager
def _doctor_hint(hosts: list[str], registry: str | None = None) -> Iterator[None]:
    """A failure `sorctl doctor` checks for (no engine, images, dispy ports taken, a registry)
    gets a line below its error naming the doctor command."""
    try:
        yield
    except (EngineError, ImageError, PortsTakenError) as exc:
        exc.add_note(doctor_cmd.hint(hosts, registry))
        raise


def up(
    nodes: Annotated[
        int, typer.Option("--nodes", help="Number of dispynode containers.")
    ] = Shape.nodes,
    relay: Annotated[
        bool, typer.Option("--relay", help="Nodes on remote subnet(s) found through dispynetrelay.")
    ] = False,
    subnets: Annotated[
        int, typer.Option("--subnets", help="Remote subnets (with --relay).")
    ] = Shape.subnets,
    cpus_per_node: Annotated[
        int, typer.Option("--cpus-per-node", help="CPUs each node offers.")
    ] = Shape.cpus_per_node,
    tls: Annotated[
        bool, typer.Option("--tls", help="Encrypt dispy traffic with a generated certificate.")
    ] = False,
    name: NameOpt = DEFAULT_CLUSTER,
    timeout: TimeoutOpt = READY_TIMEOUT_S,
    keep_on_failure: Annotated[
        bool, typer.Option("--keep-on-failure", help="Leave a failed cluster for inspection.")
    ] = False,
    host: hosts_cmd.HostOpt = None,
    scheduler_host: hosts_cmd.SchedulerHostOpt = None,
    tlscacert: hosts_cmd.TLSCaOpt = None,
    tlscert: hosts_cmd.TLSCertOpt = None,
    tlskey: hosts_cmd.TLSKeyOpt = None,
    no_firewall: hosts_cmd.NoFirewallOpt = False,
    relay_host: hosts_cmd.RelayHostOpt = None,
    registry: hosts_cmd.RegistryOpt = None,
) -> None:
    """Bring up a dispy cluster and wait until the scheduler counts every node."""
    _check_host_flags(host, relay, relay_host, subnets, registry)
    if host:
        # --cpus-per-node left at its default: every CPU of each machine
        cpus = None if cpus_per_node == Shape.cpus_per_node else cpus_per_node
        with _doctor_hint([*host, *(relay_host or [])], registry):
            hosts_cmd.up(
                name, host, scheduler_host=scheduler_host, cpus_per_node=cpus, tls=tls,
                tls_files=(tlscacert, tlscert, tlskey), timeout=timeout,
                keep_on_failure=keep_on_failure, firewall=not no_firewall, relay_hosts=relay_host,
                registry=registry,
            )  # fmt: skip
        return
    with _doctor_hint([]), _progress() as progress:
        cluster = Cluster.up(
            name,
            nodes=nodes,
            relay=relay,
            subnets=subnets,
            cpus_per_node=cpus_per_node,
            tls=tls,
            timeout=timeout,
            keep_on_failure=keep_on_failure,
            reporter=RichReporter(progress),
        )
    if not cluster.created:
        err.print(f"cluster {name!r} is already up with this shape; nothing to do")
    else:
        err.print(f"ready in {cluster.ready_s:.1f} s")
    shape = Shape(nodes, relay, subnets, cpus_per_node, tls)
    print(f"cluster {name}: {shape.describe()}; {_connect_line(cluster.status().to_dict())}")


def _check_host_flags(
    host: list[str] | None, relay: bool, relay_host: list[str] | None, subnets: int,
    registry: str | None,
) -> None:  # fmt: skip
    """`up`'s flags that only go with --host, or not with it."""
    if relay_host and not host:
        raise InputError("--relay-host goes with --host (a cluster across machines)")
    if registry and not host:
        raise InputError("--registry goes with --host (one engine builds its own images)")
    if not host:
        return
    if relay and not relay_host:
        raise InputError(
            "--relay with --host needs --relay-host ENDPOINT on each other subnet: a host "
            "there that runs no node (docs/several-machines.md)"
        )
    if relay_host and not relay:
        raise InputError("--relay-host needs --relay")
    if subnets != Shape.subnets:
        raise InputError("--subnets is for one engine; with --host the hosts make the subnets")


def scale(
    nodes: Annotated[
        int | None, typer.Option("--nodes", help="The new number of nodes (one engine).")
    ] = None,
    add_host: hosts_cmd.AddHostOpt = None,
    remove_host: hosts_cmd.RemoveHostOpt = None,
    name: NameOpt = DEFAULT_CLUSTER,
    timeout: TimeoutOpt = READY_TIMEOUT_S,
    tlscacert: hosts_cmd.TLSCaOpt = None,
    tlscert: hosts_cmd.TLSCertOpt = None,
    tlskey: hosts_cmd.TLSKeyOpt = None,
    registry: hosts_cmd.RegistryOpt = None,
) -> None:
    """Grow or shrink a running cluster: to --nodes nodes on one engine, or by whole hosts
    (--add-host / --remove-host) for a cluster made with --host."""
    if registry and not add_host:
        raise InputError("--registry goes with --add-host (the new hosts pull from it)")
    cluster = Cluster(name, must_exist=False, tls_files=(tlscacert, tlscert, tlskey))
    add, remove = add_host or [], remove_host or []
    if cluster.across_hosts:
        hosts_cmd.scale(cluster, nodes, add, remove, timeout=timeout, registry=registry)
        return
    with _progress() as progress:
        before, after = cluster.scale(
            nodes, add=add, remove=remove, timeout=timeout, reporter=RichReporter(progress)
        )
    print(f"cluster {name}: {before} -> {after} node(s)")


def _status_table(data: dict) -> None:
    shape = data["shape"]
    title = f"cluster {data['name']}"
    if shape:
        title += f": {Shape(**shape).describe()}"
    t = Table(title=title, title_justify="left")
    for col in ("container", "role", "state", "health", "address", "networks", "cpus seen"):
        t.add_column(col)
    cpus = {n["name"]: str(n["scheduler_cpus"]) for n in data["nodes"]}
    for c in data["containers"]:
        t.add_row(
            c["name"],
            c["role"],
            c["state"],
            c["health"] or "-",
            c["address"],
            ", ".join(c["networks"]),
            cpus.get(c["name"], ""),
        )
    out.print(t)
    nets = ", ".join(f"{n['name']} {n['subnet']}" for n in data["networks"]) or "-"
    out.print(f"networks: {nets}")
    conn = data["connect"]
    seen = sum(1 for n in data["nodes"] if n["discovered"])
    out.print(
        f"scheduler counts {seen}/{len(data['nodes'])} node(s), {data['scheduler_cpus']} cpu(s); "
        f"connect: {conn['scheduler_address']}:{conn['scheduler_port']} on {conn['network']}"
        + (f", routes {conn['routes']}" if conn["routes"] else ""),
        highlight=False,
    )
    tls = f"; TLS certificate {conn['cert_file']}" if conn["tls"] else ""
    out.print(f"secret: {conn['secret_file'] or '(missing on this host)'}{tls}", highlight=False)


def status(
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="One cluster (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Containers, networks, the nodes the scheduler counts, and how a client connects."""
    if name and api.is_multihost(name):  # every host: reachable?, its containers, the count
        data_hosts = hosts_cmd.status(Cluster(name), as_json)
        if as_json:
            print(json.dumps({"clusters": [data_hosts]}, indent=2))
        return
    # without --name: the clusters across hosts too (printed as they come, each from its hosts)
    across = [] if name else api.multihost_clusters()
    multi = [hosts_cmd.status(Cluster(n), as_json) for n in across]
    names = [name] if name else [n for n in clusters() if n not in across]
    data: list[dict] = []
    for n in names:
        try:
            data.append(Cluster(n).status().to_dict())
        except EngineError:
            raise
        except ClusterError:  # not there (any more): said below, as for no clusters at all
            continue
    if as_json:
        print(json.dumps({"clusters": multi + data}, indent=2))
        return
    if not data and not multi:
        err.print(f"no cluster named {name!r}" if name else "no sorctl clusters")
        return
    for d in data:
        _status_table(d)


def logs(
    target: Annotated[
        str | None,
        typer.Argument(help="A role (scheduler, node, relay, router) or a container name."),
    ] = None,
    name: NameOpt = DEFAULT_CLUSTER,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", help="Only the last N lines of each.")
    ] = None,
) -> None:
    """Print the logs of a cluster's containers, each line prefixed with its container."""
    for container, line in Cluster(name).logs(target, follow=follow, tail=tail, warn=err.print):
        sys.stdout.write(f"{container} | {line}\n")
        sys.stdout.flush()


def down(
    name: NameOpt = DEFAULT_CLUSTER,
    all_clusters: Annotated[bool, typer.Option("--all", help="Every sorctl cluster.")] = False,
) -> None:
    """Remove everything that carries the cluster's labels, and its host secret."""
    if not all_clusters and api.is_multihost(name):
        if not hosts_cmd.down(Cluster(name)):
            raise typer.Exit(1)
        return
    cleaned, removed_any = True, False
    if all_clusters:  # the clusters across hosts first, each on all its hosts
        for n in api.multihost_clusters():
            cleaned = hosts_cmd.down(Cluster(n)) and cleaned
            removed_any = True
    # a cluster across hosts that could not be cleaned keeps its name: not this engine's
    names = [n for n in clusters() if not api.is_multihost(n)] if all_clusters else [name]
    for n in names:
        counts = Cluster(n, must_exist=False).down()
        if any(counts.values()):
            removed_any = True
            print(
                f"cluster {n}: removed {counts['containers']} container(s), "
                f"{counts['networks']} network(s), {counts['volumes']} volume(s)"
            )
    if not cleaned:
        raise typer.Exit(1)
    if not removed_any:
        err.print(
            "no sorctl clusters; nothing to remove"
            if all_clusters
            else f"no cluster named {name!r}; nothing to remove"
        )


def register(app: typer.Typer) -> None:
    """Add up, status, logs, down and scale to the sorctl app."""
    for fn in (up, status, logs, down, scale):
        app.command(fn.__name__)(fn)
