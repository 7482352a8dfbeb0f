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
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--node"] == ["*"]
    # the members: a file of the scheduler's own (its entrypoint adds `--node ADDR` for each)
    assert sched[0].files == {"nodes": "".join(f"{a}\n" for a in ADDRS.values()).encode()}
    assert names.NODES_PATH == f"{names.RUN_DIR}/nodes"
    assert all(not c.files for c in plan.containers if c.role == "node")
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


def _record(tmp_path, specs=SPECS, addrs=ADDRS, indexes=None):
    plan = hostplan.make_host_plan("c", specs, addrs, specs[0].endpoint, version="1",
                                   indexes=indexes)  # fmt: skip
    hostplan.save_hosts(tmp_path, plan, specs, cpus_per_node=2, dispy_tls=True)
    loaded = hostplan.load_hosts(tmp_path)
    assert loaded is not None
    return loaded


def test_the_host_list_keeps_each_node_index_and_what_scale_needs(tmp_path):
    specs, record = _record(tmp_path, indexes={s.endpoint: i for i, s in
                                               zip([1, 4, 7], SPECS, strict=True)})  # fmt: skip
    # each with the address its node binds
    assert [(s.endpoint, s.address) for s in specs] == list(ADDRS.items())
    assert hostplan.host_indexes(record) == {"ssh://a@lab1": 1, "tcp://10.0.5.7:2376": 4,
                                             "ctx3": 7}  # fmt: skip
    assert record["cpus_per_node"] == 2 and record["dispy_tls"] is True
    assert (tmp_path / hostplan.HOSTS_FILE).stat().st_mode & 0o777 == 0o600
    # a list written before indexes were kept: 1, 2, ... in order
    old = {"hosts": [{k: v for k, v in h.items() if k != "index"} for h in record["hosts"]]}
    assert list(hostplan.host_indexes(old).values()) == [1, 2, 3]


def test_scale_adds_with_fresh_indexes_and_removes_members(tmp_path):
    specs, record = _record(tmp_path)
    new = parse_hosts(["ssh://a@lab4", "tcp://10.0.5.9:2376=10.0.5.99"])
    sp = hostplan.plan_scale(specs, record, new, ["tcp://10.0.5.7:2376"])
    assert [s.endpoint for s in sp.kept] == ["ssh://a@lab1", "ctx3"]
    assert [s.endpoint for s in sp.removed] == ["tcp://10.0.5.7:2376"]
    assert sp.added == new and sp.after == [*sp.kept, *new]
    # new nodes never reuse an index (node-2 is gone, its name is not given again)
    assert sp.indexes == {"ssh://a@lab1": 1, "ctx3": 3, "ssh://a@lab4": 4,
                          "tcp://10.0.5.9:2376": 5}  # fmt: skip
    # a host may be named by its host name too
    by_name = hostplan.plan_scale(specs, record, [], ["10.0.5.7"])
    assert [s.endpoint for s in by_name.removed] == ["tcp://10.0.5.7:2376"]


@pytest.mark.parametrize(
    ("add", "remove", "words"),
    [
        ([], [], "give --add-host"),
        (["ctx3"], [], "already a host"),
        (["ssh://a@lab4", "ssh://a@lab4"], [], "given twice"),
        ([], ["ssh://a@lab9"], "not a host of the cluster"),
        ([], ["ssh://a@lab1"], "runs the scheduler"),
        ([], ["ctx3", "ctx3"], "given twice"),
    ],
)
def test_scale_requests_that_cannot_be_done(tmp_path, add, remove, words):
    specs, record = _record(tmp_path)
    with pytest.raises(InputError, match=words):
        hostplan.plan_scale(specs, record, [hostplan_spec(a) for a in add], remove)


def hostplan_spec(text):
    from sorctl.cluster.hosts import parse_host

    return parse_host(text)


def test_nodes_file_and_distinct_addresses():
    assert hostplan.nodes_file(["10.0.0.1", "10.0.0.2"]) == b"10.0.0.1\n10.0.0.2\n"
    assert hostplan.nodes_file_name() == "nodes"
    with pytest.raises(InputError, match="same address"):
        hostplan.check_distinct(SPECS[:2], {SPECS[0].endpoint: "1.2.3.4",
                                            SPECS[1].endpoint: "1.2.3.4"})  # fmt: skip


def test_relay_layout_nodes_behind_a_relay_are_told_nothing_and_the_relay_is_listed():
    specs = parse_hosts(["ssh://a@lab1", "ssh://a@lab2", "ssh://a@lab3"])
    relays = parse_hosts(["ssh://a@relay"])
    addrs = {"ssh://a@lab1": "10.0.4.2", "ssh://a@lab2": "10.0.5.2", "ssh://a@lab3": "10.0.6.2",
             "ssh://a@relay": "10.0.5.9"}  # fmt: skip
    # lab2 shares the relay's subnet; lab3 is on a third subnet without a relay
    on_link = {"ssh://a@lab1": {"ssh://a@relay": False}, "ssh://a@lab2": {"ssh://a@relay": True},
               "ssh://a@lab3": {"ssh://a@relay": False}}  # fmt: skip
    relayed = hostplan.relayed_nodes(specs, relays, "ssh://a@lab1", on_link)
    assert relayed == {"ssh://a@lab2"}
    plan = hostplan.make_host_plan("c", specs, addrs, "ssh://a@lab1", version="1",
                                   relays=relays, relayed=relayed)  # fmt: skip
    by_name = {c.name: c for c in plan.containers}
    assert "SORCTL_SCHEDULER" not in by_name["c-node-2"].env
    assert by_name["c-node-3"].env["SORCTL_SCHEDULER"] == "10.0.4.2"  # directed, as without
    relay = by_name["c-relay-1"]
    assert (relay.host, relay.role, relay.env) == (
        "ssh://a@relay",
        "relay",
        {"SORCTL_HOST": "10.0.5.9", "SORCTL_SCHEDULER": "10.0.4.2"},
    )
    # the scheduler pings the directed nodes and the relay, not the relayed node
    assert by_name["c-scheduler"].files["nodes"].split() == [b"10.0.4.2", b"10.0.6.2",
                                                              b"10.0.5.9"]  # fmt: skip
    assert plan.expected_nodes == {"10.0.4.2": "c-node-1", "10.0.5.2": "c-node-2",
                                   "10.0.6.2": "c-node-3"}  # fmt: skip


def test_relay_errors():
    specs = parse_hosts(["ssh://a@lab1", "ssh://a@lab2"])
    relays = parse_hosts(["ssh://a@relay"])
    with pytest.raises(InputError, match="on the scheduler's subnet"):
        hostplan.relayed_nodes(specs, relays, "ssh://a@lab1",
                               {"ssh://a@lab1": {"ssh://a@relay": True}})  # fmt: skip
    addrs = {"ssh://a@lab1": "10.0.4.2", "ssh://a@lab2": "10.0.5.2", "ssh://a@relay": "10.0.5.2"}
    with pytest.raises(InputError, match="same address"):
        hostplan.make_host_plan("c", specs, addrs, "ssh://a@lab1", version="1", relays=relays)


def test_on_link_from_route_output():
    assert hostplan.on_link("10.0.5.9 dev eth0 src 10.0.5.2 uid 0 \\    cache")
    assert not hostplan.on_link("10.0.5.9 via 10.0.4.254 dev eth0 src 10.0.4.2 uid 0")
    assert not hostplan.on_link("")


def test_a_cluster_with_relays_is_not_scaled(tmp_path):
    specs, record = _record(tmp_path)
    record["relays"] = [{"endpoint": "ssh://a@relay", "kind": "ssh", "hostname": "relay"}]
    with pytest.raises(InputError, match="relay hosts"):
        hostplan.plan_scale(specs, record, parse_hosts(["ssh://a@lab4"]), [])
    assert [r.endpoint for r in hostplan.relay_hosts(record)] == ["ssh://a@relay"]
