"""What the dashboard shows, as plain JSON: the clusters (through sorctl.api) and the solve feeds
(sorctl.solvefeed). No Docker here: the API reaches the engine."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sorctl import api, solvefeed
from sorctl.errors import ClusterError, EngineError, SorctlError

SOLVES_LISTED = 20


def clusters(only: str | None = None) -> dict[str, Any]:
    """{"engine": bool, "error": str|None, "clusters": [status dicts], "multihost": [views]}
    (`only`: one cluster). The clusters across hosts come from their own hosts' engines, so
    they are listed whether or not this machine's engine answers."""
    multi = [n for n in api.multihost_clusters() if only is None or n == only]
    across = [multihost(n) for n in multi]
    try:
        names = api.clusters()
    except EngineError as exc:
        return {"engine": False, "error": str(exc), "clusters": [], "multihost": across}
    names = [n for n in names if (only is None or n == only) and n not in multi]
    out = []
    for name in names:
        try:
            out.append(api.Cluster(name, must_exist=False).status().to_dict())
        except ClusterError:  # taken down between the listing and its status
            continue
    return {"engine": True, "error": None, "clusters": out, "multihost": across}


def multihost(name: str) -> dict[str, Any]:
    """One cluster across hosts, as host_view shapes it; a status that fails is its error."""
    try:
        status = asdict(api.hosts_status(name))
    except SorctlError as exc:
        status = {"name": name, "hosts": [], "nodes": {}, "scheduler_error": str(exc)}
    return host_view(status)


def host_view(status: dict[str, Any]) -> dict[str, Any]:
    """What the page draws of a cluster across hosts, from a status dict as api.hosts_status
    gives it ({name, scheduler_host, scheduler_address, hosts: [{endpoint, reachable, error,
    containers: [{name, role, state}], rules, address}], nodes: {address: cpus},
    scheduler_error}): per host its containers, each node with the CPUs the scheduler counts
    for that host's address (one node per host), and the number of firewall rules."""
    nodes: dict[str, int] = {str(a): int(c) for a, c in (status.get("nodes") or {}).items()}
    hosts = []
    for h in status.get("hosts") or []:
        address = h.get("address")
        containers = []
        for c in h.get("containers") or []:
            row = {"name": c.get("name"), "role": c.get("role") or "", "state": c.get("state")}
            if row["role"] == "node":
                row["cpus"] = nodes.get(address, 0) if address else 0
            containers.append(row)
        rules = h.get("rules")
        hosts.append({
            "endpoint": h.get("endpoint"),
            "address": address,
            "reachable": bool(h.get("reachable")),
            "error": h.get("error"),
            "scheduler": h.get("endpoint") == status.get("scheduler_host"),
            "containers": containers,
            "rules": len(rules) if isinstance(rules, list) else None,
        })  # fmt: skip
    return {
        "name": status.get("name"),
        "scheduler_host": status.get("scheduler_host"),
        "scheduler_address": status.get("scheduler_address"),
        "scheduler_error": status.get("scheduler_error"),
        "hosts": hosts,
        "nodes": nodes,
        "counted": len(nodes),
        "scheduler_cpus": sum(nodes.values()),
    }


def solves() -> list[dict[str, Any]]:
    """The newest solve feeds, newest first, one summary each."""
    out = []
    for feed_id in solvefeed.feed_ids()[:SOLVES_LISTED]:
        path = solvefeed.feed_path(feed_id)
        row = solvefeed.summary(path) if path else None
        if row is not None:
            out.append(row)
    return out


def solve_records(feed_id: str, offset: int) -> dict[str, Any] | None:
    """A feed's records from byte `offset` on, and the offset to ask for next; None: no such."""
    path = solvefeed.feed_path(feed_id)
    if path is None:
        return None
    chunk = solvefeed.read(path, max(0, offset))
    return {"records": chunk.records, "offset": chunk.offset}
