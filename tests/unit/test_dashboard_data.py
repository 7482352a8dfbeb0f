"""The dashboard's data shaping for clusters across Docker hosts (no engine, no lab: a status
of the shape api.hosts_status returns)."""

from __future__ import annotations

from dataclasses import asdict

from sorctl import api
from sorctl.dashboard import data
from sorctl.engine.multihost import HostStatus, MultiStatus
from sorctl.errors import EngineError

RULES = [
    "-A SORCTL-lab -s 10.0.5.7/32 -p tcp --dport 9700:9702 -j ACCEPT",
    "-A SORCTL-lab -j DROP",
]


def lab() -> MultiStatus:
    """Three hosts: the scheduler's, a second node, and one that does not answer."""
    return MultiStatus(
        name="lab",
        scheduler_host="ssh://alice@lab1",
        scheduler_address="10.0.5.5",
        hosts=[
            HostStatus("ssh://alice@lab1", True, None, [
                {"name": "lab-scheduler", "role": "scheduler", "state": "running"},
                {"name": "lab-node-1", "role": "node", "state": "running"},
            ], RULES, "10.0.5.5"),
            HostStatus("tcp://10.0.5.7:2376", True, None, [
                {"name": "lab-node-2", "role": "node", "state": "exited"},
            ], [], "10.0.5.7"),
            HostStatus("ssh://alice@lab3", False, "host ssh://alice@lab3: connection refused",
                       [], [], "10.0.5.9"),
        ],
        nodes={"10.0.5.5": 8, "10.0.5.7": 4},
    )  # fmt: skip


def test_hosts_with_their_containers_cpus_and_firewall_rules():
    view = data.host_view(asdict(lab()))
    assert view["name"] == "lab" and view["scheduler_address"] == "10.0.5.5"
    assert view["counted"] == 2 and view["scheduler_cpus"] == 12
    one, two, three = view["hosts"]
    assert one["endpoint"] == "ssh://alice@lab1" and one["scheduler"] and one["reachable"]
    assert one["containers"] == [
        {"name": "lab-scheduler", "role": "scheduler", "state": "running"},
        {"name": "lab-node-1", "role": "node", "state": "running", "cpus": 8},
    ]
    assert one["rules"] == 2 and two["rules"] == 0
    assert not two["scheduler"] and two["containers"][0]["cpus"] == 4
    assert two["containers"][0]["state"] == "exited"
    assert not three["reachable"] and "connection refused" in three["error"]
    assert three["containers"] == [] and three["address"] == "10.0.5.9"


def test_a_node_the_scheduler_does_not_count_has_no_cpus():
    status = asdict(lab())
    status["nodes"] = {"10.0.5.5": 8}
    status["hosts"][1]["address"] = None  # a host list from before addresses were recorded
    view = data.host_view(status)
    assert view["hosts"][1]["containers"][0]["cpus"] == 0 and view["counted"] == 1


def test_clusters_across_hosts_are_listed_apart_even_without_a_local_engine(monkeypatch):
    monkeypatch.setattr(api, "multihost_clusters", lambda: ["lab"])
    monkeypatch.setattr(api, "hosts_status", lambda name: lab())

    def no_engine():
        raise EngineError("no engine")

    monkeypatch.setattr(api, "clusters", no_engine)
    body = data.clusters()
    assert body["engine"] is False and body["clusters"] == []
    assert [c["name"] for c in body["multihost"]] == ["lab"]
    assert data.clusters("other")["multihost"] == []
    # a host that is also this machine's engine: its containers' labels do not list it twice
    monkeypatch.setattr(api, "clusters", lambda: ["lab"])
    body = data.clusters()
    assert body["engine"] is True and body["clusters"] == [] and len(body["multihost"]) == 1


def test_a_status_that_fails_is_shown_as_its_error(monkeypatch):
    from sorctl.errors import ClusterError

    def gone(name):
        raise ClusterError(f"no multi-host cluster named {name!r}")

    monkeypatch.setattr(api, "hosts_status", gone)
    view = data.multihost("lab")
    assert view["hosts"] == [] and "no multi-host cluster" in view["scheduler_error"]
