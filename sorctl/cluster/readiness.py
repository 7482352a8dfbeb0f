"""What the scheduler sees: parsed from its own debug log (the CLI starts it with `-d`).

dispyscheduler logs every node it adds ('Discovered ADDR:PORT (NAME) with N cpus'), cpu
changes and the nodes it drops; it has no other way to ask it without joining as a client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DISCOVERED = re.compile(
    r"Discovered (?P<addr>[\d.]+):\d+ \((?P<name>[^)]*)\) with (?P<cpus>\d+) cpus"
)
_REDISCOVERED = re.compile(r"Node (?P<addr>[\d.]+) rediscovered")
_CPUS = re.compile(r"Setting cpus for (?P<addr>[\d.]+) to (?P<cpus>-?\d+)")
_DROPPED = re.compile(
    r"Node (?P<addr>[\d.]+) is not responding; removing it"
    r"|Failed to run job \S+ on (?P<addr2>[\d.]+) for computation .*; removing this node"
)
_MISMATCH = re.compile(r"Ignoring node (?P<addr>[\d.]+) due to \"secret\" mismatch")


@dataclass
class SchedulerView:
    nodes: dict[str, int]  # address -> cpus the scheduler counts
    names: dict[str, str]  # address -> the node's host name
    secret_mismatch: set[str]


def parse_scheduler_log(text: str) -> SchedulerView:
    view = SchedulerView({}, {}, set())
    for line in text.splitlines():
        if m := _DISCOVERED.search(line):
            view.nodes[m["addr"]] = int(m["cpus"])
            view.names[m["addr"]] = m["name"]
        elif m := _REDISCOVERED.search(line):
            view.nodes.setdefault(m["addr"], 0)
        elif m := _CPUS.search(line):
            if m["addr"] in view.nodes:
                view.nodes[m["addr"]] = max(int(m["cpus"]), 0)
        elif m := _DROPPED.search(line):
            view.nodes.pop(m["addr"] or m["addr2"], None)
        elif m := _MISMATCH.search(line):
            view.secret_mismatch.add(m["addr"])
    return view


def missing_nodes(
    view: SchedulerView, expected: dict[str, str], recent: SchedulerView | None = None
) -> list[str]:
    """Names (from `expected`: address -> container name) the scheduler does not count yet.

    `recent`, the log since the nodes started, must mention each node: a node re-created at
    an address the scheduler still remembers is logged only as "rediscovered", and its cpus
    then come from `view` (the log as it was before).
    """
    if recent is None:
        return [name for addr, name in expected.items() if view.nodes.get(addr, 0) <= 0]
    return [
        name
        for addr, name in expected.items()
        if addr not in recent.nodes or (recent.nodes[addr] or view.nodes.get(addr, 0)) <= 0
    ]
