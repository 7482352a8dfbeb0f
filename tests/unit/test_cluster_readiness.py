"""Readiness from the scheduler's own table of nodes (published by images/run-daemon.py)."""

import json
import runpy
import sys
import threading
import time
import types

from sorctl.cluster.readiness import STALE_S, missing_nodes, parse_view, secret_mismatches
from sorctl.engine.images import IMAGES

NOW = 1_800_000_000.0
TABLE = {
    "pid": 7,
    "t": NOW - 0.5,
    "nodes": {
        "10.213.1.11": {"name": "ct-node-1", "cpus": 2, "since": NOW - 30},
        "10.213.1.12": {"name": "ct-node-2", "cpus": 1, "since": NOW - 2},
        "10.213.1.14": {"name": "ct-node-4", "cpus": 0, "since": NOW - 2},
    },
}  # fmt: skip


def test_the_table_gives_each_node_its_cpus_and_name():
    view = parse_view(json.dumps(TABLE), NOW)
    assert view.nodes == {"10.213.1.11": 2, "10.213.1.12": 1, "10.213.1.14": 0}
    assert view.names["10.213.1.12"] == "ct-node-2"


def test_missing_nodes_names_what_the_scheduler_does_not_count():
    view = parse_view(json.dumps(TABLE), NOW)
    expected = {f"10.213.1.1{i}": f"n{i}" for i in (1, 2, 3, 4)}
    assert missing_nodes(view, expected) == ["n3", "n4"]


def test_a_node_counted_before_it_was_started_is_an_earlier_one():
    view = parse_view(json.dumps(TABLE), NOW)
    expected = {"10.213.1.11": "n1", "10.213.1.12": "n2"}
    assert missing_nodes(view, expected, since=NOW - 10) == ["n1"]


def test_a_missing_garbled_or_stale_table_counts_nothing():
    stale = {**TABLE, "t": NOW - STALE_S - 1}
    for text in ("", "{", "[]", json.dumps({"t": NOW}), json.dumps(stale)):
        view = parse_view(text, NOW)
        assert view.nodes == {} and missing_nodes(view, {"1.2.3.4": "n"}) == ["n"]


def test_secret_mismatch_lines():
    log = (
        '2026-11-25 17:00:05 dispyscheduler - Ignoring node 10.213.1.13 due to "secret" mismatch\n'
        "2026-11-25 17:00:06 dispyscheduler - Discovered 10.213.1.11:9701 (n) with 2 cpus\n"
    )
    assert secret_mismatches(log) == {"10.213.1.13"}


def test_run_daemon_publishes_the_scheduler_singletons_nodes(tmp_path, monkeypatch):
    """images/run-daemon.py's publisher against a stand-in for dispyscheduler's objects."""

    class _Scheduler:
        pass

    node = types.SimpleNamespace(name="n1", cpus=2, avail_cpus=2, busy=0.0, port=9701, auth="a")
    sched = _Scheduler()
    sched._nodes = {"10.0.0.11": node}
    fake = types.ModuleType("pycos")
    fake.Singleton = type("Singleton", (), {"_memo": {_Scheduler: sched}})
    monkeypatch.setitem(sys.modules, "pycos", fake)
    ns = runpy.run_path(str(IMAGES / "run-daemon.py"), run_name="run_daemon_under_test")
    out = tmp_path / "view.json"
    ns["_publish_nodes"].__globals__.update(VIEW_FILE=str(out), VIEW_EVERY_S=0.05)
    threading.Thread(target=ns["_publish_nodes"], daemon=True).start()
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    view = parse_view(out.read_text(), time.time())
    assert view.nodes == {"10.0.0.11": 2} and view.names == {"10.0.0.11": "n1"}
    first = view.since["10.0.0.11"]
    node.auth = "b"  # the node restarted: a new signature
    deadline = time.monotonic() + 10
    while parse_view(out.read_text(), time.time()).since["10.0.0.11"] == first:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_run_daemon_drops_only_the_nodes_taken_out_of_a_whole_members_file(tmp_path, monkeypatch):
    """dispyscheduler never forgets an idle node that stops: run-daemon.py drops those that
    `scale --remove-host` takes out of the members' file, and only on a file read whole."""
    monkeypatch.setitem(sys.modules, "pycos", types.ModuleType("pycos"))
    ns = runpy.run_path(str(IMAGES / "run-daemon.py"), run_name="run_daemon_under_test")
    members = tmp_path / "nodes"
    ns["_Members"].removed.__globals__["MEMBERS_FILE"] = str(members)
    m = ns["_Members"]()
    assert m.removed() == set()  # no file (a single-engine scheduler)
    members.write_text("10.0.0.1\n10.0.0.2\n")
    assert m.removed() == set() and m.removed() == set()  # read twice: the members at start
    members.write_text("10.0.0.1\n10.0.0.2\n10.0.0.3\n")  # one more: nothing to drop
    assert m.removed() == set() and m.removed() == set()
    members.write_text("10.0.0.1\n10.0.")  # caught half written, even twice: no drop
    assert m.removed() == set() and m.removed() == set()
    members.write_text("10.0.0.1\n")
    assert m.removed() == set()  # read once: it might still be changing
    assert m.removed() == {"10.0.0.2", "10.0.0.3"}
    assert m.removed() == set()  # dropped once

    # the drop itself, as a pycos task would run it in the scheduler's thread
    gone = []
    sched = types.SimpleNamespace(_nodes={"10.0.0.2": "n2", "10.0.0.1": "n1"})
    sched.delete_node = lambda node: (
        gone.append(node) or sched._nodes.pop(next(a for a, n in sched._nodes.items() if n == node))
    )
    task = types.SimpleNamespace(sleep=lambda s: None)
    for _ in ns["_drop"](sched, ["10.0.0.2", "10.0.0.9"], task=task):
        pass
    assert gone == ["n2"] and sched._nodes == {"10.0.0.1": "n1"}
