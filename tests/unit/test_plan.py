"""Cluster plans: pure data, checked without Docker."""

from __future__ import annotations

import ipaddress

import pytest

from sorctl.cluster.plan import (
    PlanError,
    Shape,
    make_plan,
    node_slot,
    pick_subnets,
)
from sorctl.names import LABEL_CLUSTER, LABEL_ROLE, LABEL_SHAPE

IMAGES = {r: f"sorctl-{r}:test" for r in ("scheduler", "node", "relay", "router")}


def addr_in(addr: str, subnet: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(subnet)


def test_single_network_has_scheduler_and_nodes_on_one_net():
    plan = make_plan("c1", Shape(nodes=4), IMAGES)
    assert [n.name for n in plan.networks] == ["c1-net"]
    assert [c.name for c in plan.containers] == [
        "c1-scheduler",
        "c1-node-1",
        "c1-node-2",
        "c1-node-3",
        "c1-node-4",
    ]
    net = plan.networks[0]
    addrs = [c.address for c in plan.containers]
    assert len(set(addrs)) == len(addrs)
    assert all(addr_in(a, net.subnet) for a in addrs)
    # No routes, no router, no NET_ADMIN: broadcast discovery on one bridge.
    assert not plan.role("router") and not plan.role("relay")
    assert all("SORCTL_ROUTES" not in c.env and not c.cap_add for c in plan.containers)
    assert plan.scheduler.command[0] == "-d"


def test_static_addresses_stay_out_of_the_client_range_and_gateway():
    plan = make_plan("c1", Shape(nodes=100, relay=True), IMAGES)
    for net in plan.networks:
        client_range = ipaddress.ip_network(net.ip_range)
        for c in plan.containers:
            for name, ip in c.networks:
                if name == net.name:
                    assert ipaddress.ip_address(ip) not in client_range
                    assert ip != net.gateway


def test_relay_layout_routes_every_member_through_the_router():
    plan = make_plan("c2", Shape(nodes=5, relay=True, subnets=2), IMAGES)
    lan, r1, r2 = plan.networks
    assert (lan.role, r1.role, r2.role) == ("lan", "remote", "remote")
    router = plan.role("router")[0]
    assert router.sysctls == {"net.ipv4.ip_forward": "1"}
    assert [n for n, _ in router.networks] == [lan.name, r1.name, r2.name]
    router_ip = dict(router.networks)

    sched = plan.scheduler
    assert sched.networks == ((lan.name, sched.address),)
    assert sched.env["SORCTL_ROUTES"] == (
        f"{r1.subnet} via {router_ip[lan.name]},{r2.subnet} via {router_ip[lan.name]}"
    )
    for c in plan.role("node") + plan.role("relay"):
        ((net, ip),) = c.networks
        assert net in (r1.name, r2.name) and "NET_ADMIN" in c.cap_add
        assert f"{lan.subnet} via {router_ip[net]}" in c.env["SORCTL_ROUTES"]
    # Nodes spread round robin; one relay per remote network, pointing at the scheduler.
    assert [c.networks[0][0] for c in plan.role("node")] == [r1.name, r2.name] * 2 + [r1.name]
    relays = plan.role("relay")
    assert [r.networks[0][0] for r in relays] == [r1.name, r2.name]
    assert all(r.env["SORCTL_SCHEDULER"] == sched.address for r in relays)


def test_scheduler_gets_no_node_addresses_in_the_relay_layout():
    plan = make_plan("c3", Shape(nodes=3, relay=True), IMAGES)
    assert "SORCTL_NODES" not in plan.scheduler.env
    assert all("SORCTL_SCHEDULER" not in n.env for n in plan.role("node"))


def test_relays_start_last():
    plan = make_plan("c3", Shape(nodes=3, relay=True), IMAGES)
    first, relays = plan.start_groups()
    assert {c.role for c in first} == {"router", "scheduler", "node"}
    assert [c.role for c in relays] == ["relay"]
    single_first, single_relays = make_plan("c3", Shape(nodes=3), IMAGES).start_groups()
    assert len(single_first) == 4 and single_relays == []


def test_relays_left_out_keeps_the_same_layout():
    with_relays = make_plan("c4", Shape(nodes=4, relay=True), IMAGES)
    without = make_plan("c4", Shape(nodes=4, relay=True), IMAGES, relay_daemons=False)
    assert not without.role("relay")
    strip = [c for c in with_relays.containers if c.role != "relay"]
    assert list(without.containers) == strip
    assert without.networks == with_relays.networks


def test_labels_name_cluster_role_and_shape_everywhere():
    shape = Shape(nodes=2, relay=True, cpus_per_node=3, tls=True)
    plan = make_plan("c5", shape, IMAGES)
    for obj in [*plan.networks, *plan.containers]:
        assert obj.labels[LABEL_CLUSTER] == "c5"
        assert obj.labels[LABEL_SHAPE] == shape.label()
    assert {c.labels[LABEL_ROLE] for c in plan.containers} == {
        "scheduler",
        "node",
        "relay",
        "router",
    }
    assert Shape.from_label(shape.label(), nodes=2) == shape


def test_tls_puts_cert_and_key_into_every_dispy_role():
    plan = make_plan("c6", Shape(nodes=2, tls=True), IMAGES)
    for c in plan.containers:
        assert c.env["SORCTL_CERTFILE"] and c.env["SORCTL_KEYFILE"]
        assert len(c.files) == 3
    plain = make_plan("c6", Shape(nodes=2), IMAGES)
    assert all("SORCTL_CERTFILE" not in c.env and len(c.files) == 1 for c in plain.containers)


def test_cpus_per_node_reaches_the_nodes():
    plan = make_plan("c7", Shape(nodes=2, cpus_per_node=3), IMAGES)
    assert {c.env["SORCTL_CPUS"] for c in plan.role("node")} == {"3"}


def test_subnets_avoid_everything_in_use():
    first = pick_subnets(3, [], "x")
    blocked = [first[0], "10.213.0.0/17"]  # a wide route swallowing half the first pool
    picked = pick_subnets(3, blocked, "x")
    for p in picked:
        assert not any(ipaddress.ip_network(p).overlaps(ipaddress.ip_network(b)) for b in blocked)
    assert len(set(picked)) == 3


def test_subnet_choice_differs_between_names_and_is_stable():
    assert pick_subnets(1, [], "alpha") == pick_subnets(1, [], "alpha")
    assert pick_subnets(1, [], "alpha") != pick_subnets(1, [], "beta")


def test_no_free_subnet_is_a_plan_error():
    with pytest.raises(PlanError, match="no free /24"):
        pick_subnets(1, ["10.0.0.0/8"], "x")


def test_existing_subnets_are_kept_when_scaling():
    plan = make_plan("c8", Shape(nodes=2, relay=True), IMAGES)
    existing = {n.name: n.subnet for n in plan.networks}
    grown = make_plan(
        "c8",
        Shape(nodes=6, relay=True),
        IMAGES,
        existing_subnets=existing,
        used_subnets=list(existing.values()),
    )
    assert {n.name: n.subnet for n in grown.networks} == existing
    # Growing keeps every old node where it was.
    old = {c.name: c.networks for c in plan.role("node")}
    assert all(
        dict((c.name, c.networks) for c in grown.role("node"))[k] == v for k, v in old.items()
    )


def test_node_slots_are_round_robin_and_unique():
    slots = [node_slot(i, 3) for i in range(1, 301)]
    assert len(set(slots)) == 300
    assert [k for k, _ in slots[:6]] == [1, 2, 3, 1, 2, 3]


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("c", Shape(nodes=0), "at least 1 node"),
        ("c", Shape(nodes=2, cpus_per_node=0), "cpus-per-node"),
        ("c", Shape(nodes=2, subnets=2), "needs --relay"),
        ("c", Shape(nodes=2, relay=True, subnets=3), "empty subnets"),
        ("c", Shape(nodes=101), "at most 100"),
        ("Bad_Name", Shape(), "cluster name"),
        ("-x", Shape(), "cluster name"),
    ],
)
def test_bad_options_are_plan_errors(name, shape, message):
    with pytest.raises(PlanError, match=message):
        make_plan(name, shape, IMAGES)
