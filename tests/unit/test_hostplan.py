"""Planning a cluster across hosts: who runs what, with which addresses; probe output parsing."""

from __future__ import annotations

import pytest

from sorctl import names
from sorctl.cluster import hostplan
from sorctl.cluster.hosts import parse_hosts
from sorctl.errors import InputError

SPECS = parse_hosts(["ssh://a@lab1", "tcp://10.0.5.7:2376", "ctx3"])
ADDRS = {"ssh://a@lab1": "10.0.4.2", "tcp://10.0.5.7:2376": "10.0.5.7", "ctx3": "10.0.6.9"}


def test_scheduler_on_the_first_host_and_one_node_per_host():
    plan = hostplan.make_host_plan("c", SPECS, ADDRS, SPECS[0].endpoint, version="1")
    sched = [c for c in plan.containers if c.role == "scheduler"]
    assert len(sched) == 1 and sched[0].host == "ssh://a@lab1" and sched[0].name == "c-scheduler"
    nodes = [c for c in plan.containers if c.role == "node"]
    assert [(c.host, c.name, c.env["SORCTL_HOST"]) for c in nodes] == [
        ("ssh://a@lab1", "c-node-1", "10.0.4.2"),
        ("tcp://10.0.5.7:2376", "c-node-2", "10.0.5.7"),
        ("ctx3", "c-node-3", "10.0.6.9"),
    ]
    # Discovery both ways: every node told the scheduler, the scheduler told every node
    assert all(c.env["SORCTL_SCHEDULER"] == "10.0.4.2" for c in nodes)
    cmd = sched[0].command
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--node"] == ["*", *ADDRS.values()]
    assert all(c.labels[names.LABEL_HOST] == c.host for c in plan.containers)
    assert plan.expected_nodes == {"10.0.4.2": "c-node-1", "10.0.5.7": "c-node-2",
                                   "10.0.6.9": "c-node-3"}  # fmt: skip


def test_cpus_per_node_and_scheduler_host_choice():
    plan = hostplan.make_host_plan("c", SPECS, ADDRS, "ctx3", version="1", cpus_per_node=2)
    assert plan.scheduler_address == "10.0.6.9"
    assert all(c.env.get("SORCTL_CPUS") == "2" for c in plan.containers if c.role == "node")
    assert hostplan.pick_scheduler_host(SPECS, "10.0.5.7").endpoint == "tcp://10.0.5.7:2376"
    with pytest.raises(InputError, match="not one of"):
        hostplan.pick_scheduler_host(SPECS, "lab9")


def test_two_hosts_with_one_address_is_an_error():
    addrs = {**ADDRS, "ctx3": "10.0.4.2"}
    with pytest.raises(InputError, match="same address 10.0.4.2"):
        hostplan.make_host_plan("c", SPECS, addrs, SPECS[0].endpoint, version="1")


def test_probe_output():
    route = "10.0.4.2 via 10.0.5.254 dev eth0 src 10.0.5.7 uid 0 \\    cache"
    assert hostplan.route_source(route) == "10.0.5.7"
    assert hostplan.route_source("RTNETLINK answers: Network is unreachable") is None
    tcp = """  sl  local_address rem_address   st
   0: 0B00A8C0:25FD 00000000:0000 0A 00000000:00000000
   1: 0B00A8C0:25FE 0C00A8C0:D431 01 00000000:00000000
   2: 00000000:0016 00000000:0000 0A 00000000:00000000"""
    # dispy 9700-9702 are 0x25E4-0x25E6: none of these
    assert hostplan.ports_in_use(tcp) == []
    busy = "   0: 00000000:25E5 00000000:0000 0A 0\n   1: 00000000:25E4 00000000:0000 07 0"
    assert hostplan.ports_in_use(busy) == [9700, 9701]
    established = "   0: 00000000:25E6 0C00A8C0:D431 01 0"
    assert hostplan.ports_in_use(established) == []
