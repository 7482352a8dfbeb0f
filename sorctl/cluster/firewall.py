"""Packet filter rules that keep a cluster's dispy ports to its own members (pure: the shell
scripts; sorctl.engine.firewall runs them on each host with the host's own iptables).

Why: dispy unpickles whatever arrives on its ports, UDP discovery before any authentication,
so whoever reaches 9700-9702 on a host can run code there. On each host of a cluster across
machines, a chain of its own accepts those ports from the cluster's member addresses (and the
host itself) and drops the rest; INPUT jumps to it for the dispy ports only. Every rule carries
the comment `sorctl:<cluster>`; adding is idempotent (the chain is rebuilt, the jump added only
when missing) and removing deletes exactly those rules.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex

from sorctl.names import CLIENT_PORT, DISPY_PORT, NODE_PORT

PORTS = f"{DISPY_PORT}:{CLIENT_PORT}"  # 9700-9702, NODE_PORT between them
assert DISPY_PORT < NODE_PORT < CLIENT_PORT


def chain(cluster: str) -> str:
    """iptables chain names are at most 28 characters: SORCTL- plus a digest of the name."""
    return "SORCTL-" + hashlib.sha256(cluster.encode()).hexdigest()[:12]


def comment(cluster: str) -> str:
    return f"sorctl:{cluster}"[:250]


def _jumps(cluster: str) -> list[str]:
    c, note = chain(cluster), shlex.quote(comment(cluster))
    return [
        f"INPUT -p {proto} -m multiport --dports {PORTS} -m comment --comment {note} -j {c}"
        for proto in ("tcp", "udp")
    ]


def add_script(cluster: str, members: list[str]) -> str:
    """Shell commands (run with the host's iptables) that leave exactly the cluster's rules."""
    for m in members:
        ipaddress.IPv4Address(m)  # addresses only: nothing else reaches the shell
    c, note = chain(cluster), shlex.quote(comment(cluster))
    lines = ["set -e", f"iptables -w -N {c} 2>/dev/null || iptables -w -F {c}"]
    lines.append(f"iptables -w -A {c} -i lo -m comment --comment {note} -j RETURN")
    for m in sorted(set(members)):
        lines.append(f"iptables -w -A {c} -s {m}/32 -m comment --comment {note} -j RETURN")
    lines.append(f"iptables -w -A {c} -m comment --comment {note} -j DROP")
    for jump in _jumps(cluster):
        lines.append(f"iptables -w -C {jump} 2>/dev/null || iptables -w -I {jump}")
    return "\n".join(lines)


def remove_script(cluster: str) -> str:
    c = chain(cluster)
    lines = [f"while iptables -w -D {jump} 2>/dev/null; do :; done" for jump in _jumps(cluster)]
    lines += [f"iptables -w -F {c} 2>/dev/null || true", f"iptables -w -X {c} 2>/dev/null || true"]
    return "\n".join(lines)


def list_script(cluster: str) -> str:
    """The cluster's rules, in iptables -S form (nothing when there are none)."""
    c, note = chain(cluster), comment(cluster)
    rules = f"{{ iptables -w -S INPUT; iptables -w -S {c} 2>/dev/null; }}"
    return f"{rules} | grep -F -- {shlex.quote(note)} || true"
