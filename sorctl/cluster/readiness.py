"""What the scheduler sees: its own table of nodes, which images/run-daemon.py publishes as JSON
in the scheduler container (names.SCHEDULER_VIEW_FILE) once a second.

Only a node's secret mismatch is not in that table (the scheduler ignores such a node): its
warning line in the scheduler's log gives the hint `up` prints for a missing node.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

STALE_S = 10.0  # a table older than this: its scheduler no longer runs

_MISMATCH = re.compile(r"Ignoring node (?P<addr>[\d.]+) due to \"secret\" mismatch")


@dataclass
class SchedulerView:
    nodes: dict[str, int]  # address -> cpus the scheduler counts
    names: dict[str, str]  # address -> the node's host name
    secret_mismatch: set[str] = field(default_factory=set)
    since: dict[str, float] = field(default_factory=dict)  # address -> UNIX time first counted


def parse_view(text: str, now: float) -> SchedulerView:
    """The published table (empty when missing, unreadable or stale at UNIX time `now`)."""
    view = SchedulerView({}, {})
    try:
        doc = json.loads(text)
        if now - float(doc["t"]) > STALE_S:
            return view
        for addr, node in doc["nodes"].items():
            view.nodes[addr] = max(int(node.get("cpus") or 0), 0)
            view.names[addr] = str(node.get("name") or "")
            view.since[addr] = float(node.get("since") or 0.0)
    except (ValueError, KeyError, TypeError, AttributeError):
        return SchedulerView({}, {})
    return view


def secret_mismatches(log_text: str) -> set[str]:
    """Addresses of nodes the scheduler ignored for a wrong secret (from its log)."""
    return {m["addr"] for m in _MISMATCH.finditer(log_text)}


def missing_nodes(view: SchedulerView, expected: dict[str, str], since: float = 0.0) -> list[str]:
    """Names (from `expected`: address -> container name) the scheduler does not count, or
    counted only before UNIX time `since` (a node re-created at an address the scheduler still
    remembers counts once the scheduler has seen the new one sign on)."""
    return [
        name
        for addr, name in expected.items()
        if view.nodes.get(addr, 0) <= 0 or view.since.get(addr, 0.0) < since
    ]
