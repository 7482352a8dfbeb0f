"""`sorctl up / status / logs / down / scale`: flags in, lifecycle calls, answers on stdout."""

from __future__ import annotations

import json
import sys
import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli import engine
from cli.cluster import lifecycle, observe
from cli.cluster.apply import Reporter
from cli.cluster.plan import DEFAULT_NAME, PlanError, Shape, validate
from cli.errors import EXIT_BAD_INPUT, UserError

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


def _connect_line(info: observe.ClusterInfo) -> str:
    return (
        f"scheduler {info.scheduler_address}:{info.scheduler_port} "
        f"(SharedJobCluster) on network {info.network}"
    )


def up(
    nodes: Annotated[int, typer.Option("--nodes", help="Number of dispynode containers.")] = 2,
    relay: Annotated[
        bool, typer.Option("--relay", help="Nodes on remote subnet(s) found through dispynetrelay.")
    ] = False,
    subnets: Annotated[int, typer.Option("--subnets", help="Remote subnets (with --relay).")] = 1,
    cpus_per_node: Annotated[
        int, typer.Option("--cpus-per-node", help="CPUs each node offers.")
    ] = 1,
    tls: Annotated[
        bool, typer.Option("--tls", help="Encrypt dispy traffic with a generated certificate.")
    ] = False,
    name: NameOpt = DEFAULT_NAME,
    timeout: TimeoutOpt = 60.0,
    keep_on_failure: Annotated[
        bool, typer.Option("--keep-on-failure", help="Leave a failed cluster for inspection.")
    ] = False,
) -> None:
    """Bring up a dispy cluster and wait until the scheduler counts every node."""
    shape = Shape(nodes, relay, subnets, cpus_per_node, tls)
    try:  # bad flags fail before anything talks to the engine
        validate(name, shape)
    except PlanError as exc:
        raise UserError(str(exc), EXIT_BAD_INPUT) from exc
    client = engine.connect()
    with _progress() as progress:
        result = lifecycle.up(
            client,
            name,
            shape,
            timeout=timeout,
            keep_on_failure=keep_on_failure,
            reporter=RichReporter(progress),
        )
    info = observe.find_cluster(client, name)
    assert info is not None
    if not result.created:
        err.print(f"cluster {name!r} is already up with this shape; nothing to do")
    else:
        err.print(f"ready in {result.seconds:.1f} s")
    print(f"cluster {name}: {shape.describe()}; {_connect_line(info)}")


def scale(
    nodes: Annotated[int, typer.Option("--nodes", help="The new number of nodes.")],
    name: NameOpt = DEFAULT_NAME,
    timeout: TimeoutOpt = 60.0,
) -> None:
    """Grow or shrink a running cluster to --nodes nodes."""
    if nodes < 1:
        raise UserError(f"--nodes {nodes}: need at least 1 node", EXIT_BAD_INPUT)
    client = engine.connect()
    with _progress() as progress:
        before, after = lifecycle.scale(
            client, name, nodes, timeout=timeout, reporter=RichReporter(progress)
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
    client = engine.connect()
    names = [name] if name else observe.cluster_names(client)
    infos = [i for i in (observe.find_cluster(client, n) for n in names) if i is not None]
    data = [observe.status_dict(client, i) for i in infos]
    if as_json:
        print(json.dumps({"clusters": data}, indent=2))
        return
    if not data:
        err.print(f"no cluster named {name!r}" if name else "no sorctl clusters")
        return
    for d in data:
        _status_table(d)


def _pick_containers(info: observe.ClusterInfo, target: str | None) -> list[observe.ContainerInfo]:
    if not target:
        return info.containers
    picked = [
        c
        for c in info.containers
        if target in (c.role, c.name) or c.name == f"{info.name}-{target}"
    ]
    if not picked:
        names = ", ".join(c.name for c in info.containers)
        raise UserError(
            f"no container {target!r} in cluster {info.name!r} (have: {names})", EXIT_BAD_INPUT
        )
    return picked


def logs(
    target: Annotated[
        str | None,
        typer.Argument(help="A role (scheduler, node, relay, router) or a container name."),
    ] = None,
    name: NameOpt = DEFAULT_NAME,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", help="Only the last N lines of each.")
    ] = None,
) -> None:
    """Print the logs of a cluster's containers, each line prefixed with its container."""
    client = engine.connect()
    info = observe.find_cluster(client, name)
    if info is None:
        raise UserError(f"no cluster named {name!r}")
    picked = _pick_containers(info, target)
    lock = threading.Lock()

    def pump(cname: str) -> None:
        kwargs = {"stream": True, "follow": follow, "tail": tail if tail is not None else "all"}
        buf = b""
        for chunk in client.containers.get(cname).logs(**kwargs):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            with lock:
                for line in lines:
                    sys.stdout.write(f"{cname} | {line.decode(errors='replace')}\n")
                sys.stdout.flush()
        if buf:
            with lock:
                sys.stdout.write(f"{cname} | {buf.decode(errors='replace')}\n")

    if not follow or len(picked) == 1:
        for c in picked:
            pump(c.name)
        return
    threads = [threading.Thread(target=pump, args=(c.name,), daemon=True) for c in picked]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)


def down(
    name: NameOpt = DEFAULT_NAME,
    all_clusters: Annotated[bool, typer.Option("--all", help="Every sorctl cluster.")] = False,
) -> None:
    """Remove everything that carries the cluster's labels, and its host secret."""
    client = engine.connect()
    names = observe.cluster_names(client) if all_clusters else [name]
    removed_any = False
    for n in names:
        counts = lifecycle.down(client, n)
        if any(counts.values()):
            removed_any = True
            print(
                f"cluster {n}: removed {counts['containers']} container(s), "
                f"{counts['networks']} network(s), {counts['volumes']} volume(s)"
            )
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
