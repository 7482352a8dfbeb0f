"""The several-machines side of `sorctl up / status / scale / down` (`--host`): its flags, and a
cluster across hosts (a sorctl.Cluster) drawn for humans on stderr and stdout, or as JSON."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn
from rich.table import Table

from sorctl import api

err = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def shipping_progress(label: str = "images -> {}") -> Iterator[Callable[[str, int], None]]:
    """A transient bar per host on stderr for images being sent: bytes so far and speed. Yields
    the callback the API takes (host, bytes sent)."""
    with Progress(
        TextColumn("{task.description}"), DownloadColumn(), TransferSpeedColumn(),
        console=err, transient=True,
    ) as bar:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def update(host: str, sent: int) -> None:
            if host not in tasks:
                tasks[host] = bar.add_task(label.format(host), total=None)
            bar.update(tasks[host], completed=sent)

        yield update


HostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        help="Put the cluster on this Docker host (repeatable): ssh://USER@HOST[:PORT], "
        "tcp://HOST:PORT (TLS on 2376) or a docker context name; ENDPOINT=ADDRESS sets the "
        "address dispy binds there. The first host runs the scheduler.",
    ),
]
SchedulerHostOpt = Annotated[
    str | None,
    typer.Option("--scheduler-host", help="Which --host runs the scheduler (default: the first)."),
]
NoFirewallOpt = Annotated[
    bool,
    typer.Option(
        "--no-firewall",
        help="With --host: leave the hosts' packet filter alone (dispy's ports then answer "
        "anyone who reaches them).",
    ),
]
RelayHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--relay-host",
        help="With --host and --relay: run a dispynetrelay on this Docker host (repeatable, "
        "one per other subnet; ENDPOINT[=ADDRESS]). It runs no node; the nodes of its subnet "
        "are found through it instead of being told the scheduler.",
    ),
]
AddHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--add-host",
        help="With a cluster made with --host: put a node on this Docker host too (repeatable; "
        "ENDPOINT[=ADDRESS] as for --host). Images are sent if it lacks them, every member's "
        "firewall lets it in.",
    ),
]
RemoveHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--remove-host",
        help="With a cluster made with --host: stop and remove its node on this host "
        "(repeatable; not the scheduler's host); every member's firewall shuts it out.",
    ),
]
RegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="HOST:PORT of a container registry every host pulls the images from (push them "
        "there first: sorctl images push --registry), instead of their being sent over each "
        "host's connection. Plain HTTP needs it under insecure-registries on every host.",
    ),
]
TLSCaOpt = Annotated[
    Path | None, typer.Option("--tlscacert", help="CA of the hosts' Docker TLS endpoints.")
]
TLSCertOpt = Annotated[Path | None, typer.Option("--tlscert", help="Docker TLS client cert.")]
TLSKeyOpt = Annotated[Path | None, typer.Option("--tlskey", help="Docker TLS client key.")]


def _log(line: str) -> None:
    err.print(line, markup=False, soft_wrap=True)


def _report_shipped(shipped: list[api.Shipped]) -> None:
    """A line per host that got images: sent over its connection, or pulled from a registry."""
    for s in shipped:
        if s.refs:
            verb = "pulled by" if s.how == "pulled" else "sent to"
            _log(f"images {verb} {s.host}: {' '.join(s.refs)} ({s.bytes / 1e6:.0f} MB, "
                 f"{s.seconds:.1f} s)")  # fmt: skip


def up(
    name: str,
    hosts: list[str],
    *,
    scheduler_host: str | None,
    cpus_per_node: int | None,
    tls: bool,
    tls_files: api.TLSPaths,
    timeout: float,
    keep_on_failure: bool,
    firewall: bool,
    relay_hosts: list[str] | None = None,
    registry: str | None = None,
) -> None:
    with shipping_progress() as shipping:
        cluster = api.Cluster.up(
            name, hosts=hosts, scheduler_host=scheduler_host, cpus_per_node=cpus_per_node,
            tls=tls, tls_files=tls_files, timeout=timeout, keep_on_failure=keep_on_failure,
            log=_log, ship_progress=shipping, firewall=firewall, relay=bool(relay_hosts),
            relay_hosts=relay_hosts or [], registry=registry,
        )  # fmt: skip
    res = cluster.up_result
    assert res is not None
    _report_shipped(res.shipped)
    err.print(f"ready in {res.ready_s:.1f} s")
    plan = res.plan
    nodes = ", ".join(f"{c.host}={c.env['SORCTL_HOST']}" for c in plan.containers
                      if c.role == "node")  # fmt: skip
    relays = ", ".join(f"{c.host}={c.env['SORCTL_HOST']}" for c in plan.containers
                       if c.role == "relay")  # fmt: skip
    print(
        f"cluster {name}: {len(plan.expected_nodes)} host(s), scheduler on {plan.scheduler_host} "
        f"at {plan.scheduler_address}:9702; nodes {nodes}"
        + (f"; relays {relays}" if relays else "")
    )


def scale(
    cluster: api.Cluster, nodes: int | None, add: list[str], remove: list[str], *,
    timeout: float, registry: str | None = None,
) -> None:  # fmt: skip
    name = cluster.name
    with shipping_progress() as shipping:
        res = cluster.scale(nodes, add=add, remove=remove, timeout=timeout, log=_log,
                            ship_progress=shipping, registry=registry)  # fmt: skip
    _report_shipped(res.shipped)
    for line in res.left:
        _log(line)
    err.print(f"done in {res.seconds:.1f} s")
    changes = [f"+{h}={a}" for h, a in res.added.items()]
    changes += [f"-{h}={a}" for h, a in res.removed.items()]
    cpus = sum(res.nodes.values())
    print(
        f"cluster {name}: {' '.join(changes)}; the scheduler counts {len(res.nodes)} node(s), "
        f"{cpus} cpu(s): " + ", ".join(f"{a} ({c})" for a, c in sorted(res.nodes.items()))
    )


def status(cluster: api.Cluster, as_json: bool) -> dict:
    st = cluster.status()
    assert isinstance(st, api.HostsStatus)
    name, data = cluster.name, st.to_dict()
    if as_json:
        return data
    out = Console()
    t = Table(title=f"cluster {name}: across {len(st.hosts)} host(s)", title_justify="left")
    for col in ("host", "reachable", "container", "role", "state"):
        t.add_column(col)
    for h in st.hosts:
        if not h.reachable:
            t.add_row(h.endpoint, f"no: {h.error}", "", "", "")
        for c in h.containers:
            t.add_row(h.endpoint, "yes", c["name"], c["role"] or "", c["state"])
        if h.reachable and not h.containers:
            t.add_row(h.endpoint, "yes", "(none)", "", "")
    out.print(t)
    for h in st.hosts:
        if h.rules:
            out.print(f"firewall on {h.endpoint}:", highlight=False)
            for rule in h.rules:
                out.print(f"  {rule}", highlight=False, markup=False)
    if st.scheduler_error:
        out.print(f"scheduler on {st.scheduler_host}: {st.scheduler_error}", highlight=False)
    else:
        cpus = sum(st.nodes.values())
        out.print(
            f"scheduler {st.scheduler_address}:9702 on {st.scheduler_host} counts "
            f"{len(st.nodes)} node(s), {cpus} cpu(s): "
            + ", ".join(f"{a} ({c})" for a, c in sorted(st.nodes.items())),
            highlight=False,
        )
    return data


def down(cluster: api.Cluster) -> bool:
    """Removes what it can on every host; True when every host was cleaned."""
    name = cluster.name
    removed, failed = cluster.down()
    for host, n in removed.items():
        print(f"cluster {name}: {host}: removed {n} container(s)")
    for error in failed.values():
        err.print(f"could not clean: {error}", markup=False)
    if failed:
        err.print(f"the host list stays in place: `sorctl down --name {name}` again later")
    return not failed
