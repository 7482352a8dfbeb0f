"""Reading the scheduler's own view of its nodes from its debug log."""

from __future__ import annotations

from sorctl.cluster.readiness import missing_nodes, parse_scheduler_log

LOG = """\
2026-11-25 17:00:01 dispyscheduler - version: 4.15.2 (Python 3.11.2), PID: 7
2026-11-25 17:00:02 pycos - Discovered 10.213.1.11:9701 (ct-node-1) with 2 cpus
2026-11-25 17:00:02 dispyscheduler - Discovered 10.213.1.12:9701 (ct-node-2) with 2 cpus
2026-11-25 17:00:03 dispyscheduler - Ignoring node 10.213.1.13 due to "secret" mismatch
2026-11-25 17:00:04 dispyscheduler - Setting cpus for 10.213.1.12 to 1
2026-11-25 17:00:09 dispyscheduler - Node 10.213.1.11 is not responding; removing it (1, 2, 3)
2026-11-25 17:00:10 dispyscheduler - Discovered 10.213.1.14:9701 (ct-node-4) with 1 cpus
2026-11-25 17:00:11 s - Failed to run job 1 on 10.213.1.14 for computation c; removing this node
"""


def test_parse_counts_discovered_updates_cpus_and_drops_dead_nodes():
    view = parse_scheduler_log(LOG)
    assert view.nodes == {"10.213.1.12": 1}
    assert view.names["10.213.1.11"] == "ct-node-1"
    assert view.secret_mismatch == {"10.213.1.13"}


def test_missing_nodes_names_what_the_scheduler_does_not_count():
    view = parse_scheduler_log(LOG)
    expected = {"10.213.1.11": "n1", "10.213.1.12": "n2", "10.213.1.13": "n3"}
    assert missing_nodes(view, expected) == ["n1", "n3"]


def test_empty_log_counts_nothing():
    view = parse_scheduler_log("")
    assert view.nodes == {} and missing_nodes(view, {"1.2.3.4": "n"}) == ["n"]


def test_a_node_recreated_at_a_known_address_counts_once_mentioned_again():
    before = parse_scheduler_log(LOG)
    expected = {"10.213.1.12": "n2"}
    assert missing_nodes(before, expected, parse_scheduler_log("")) == ["n2"]
    recent = parse_scheduler_log("2026-11-25 17:01:00 s - Node 10.213.1.12 rediscovered\n")
    assert recent.nodes["10.213.1.12"] == 0  # cpus not in this line: taken from before
    assert missing_nodes(before, expected, recent) == []


def test_a_node_new_since_the_earlier_log_counts_with_its_recent_cpus():
    before = parse_scheduler_log(LOG)
    recent = parse_scheduler_log(
        "2026-11-25 17:02:00 s - Discovered 10.213.1.20:9701 (ct-node-9) with 3 cpus\n"
    )
    assert missing_nodes(before, {"10.213.1.20": "n9"}, recent) == []
