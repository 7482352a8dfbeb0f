"""The dashboard page in a real headless Chromium with the machine offline: the server, the
browser and its driver run in a network namespace with loopback alone, and no cluster runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.browser.chrome import ROOT, missing

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if why := missing():
        pytest.skip(why)
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is missing")
    home = tmp_path_factory.mktemp("home")
    # -r: a user namespace too, so this works without root
    script = f"ip link set lo up && exec {sys.executable} -m tests.browser.offline_page"
    env = {**os.environ, "SORCTL_HOME": str(home)}
    proc = subprocess.run(["unshare", "-rn", "sh", "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=150)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_page_loads_offline_with_every_asset_from_sorctl(page):
    assert page["solved"]["failed"] == []
    for shown in (page["not_running"], page["no_engine"]):
        assert shown["plotly"], "plotly.js did not load"
        assert shown["failed"] == []


def test_no_cluster_says_how_to_start_one(page):
    name = page["not_running"]["name"]
    assert f"Cluster {name} is not running" in page["not_running"]["clusters"]
    assert f"sorctl up --name {name} --nodes 4 --relay" in page["not_running"]["clusters"]
    assert "No Docker engine answers" in page["no_engine"]["clusters"]
    assert "sorctl up --nodes 4 --relay" in page["no_engine"]["clusters"]


def test_a_finished_solve_shows_its_plot_a_save_button_and_its_report(page):
    solved = page["solved"]
    assert solved["row"] == "done" and "rtol" in solved["stats"]
    assert solved["points"] >= 2 and solved["save_button"] == 1
    assert "omega_source" in solved["report"] and "converged" in solved["report"]
    assert "host (sorctl solve)" in solved["memory"] and "worker" not in solved["memory"]


def test_a_cluster_across_hosts_is_drawn_host_by_host(page):
    shown = page["across_hosts"]
    assert shown["failed"] == []
    assert sorted(shown["hosts"]) == ["ssh://alice@lab1", "ssh://alice@lab3", "tcp://10.0.5.7:2376"]
    first = shown["hosts"]["ssh://alice@lab1"]
    assert "reachable" in first and "scheduler" in first and "firewall: 2 rules" in first
    assert "unreachable" in shown["hosts"]["ssh://alice@lab3"]
    assert "connection refused" in shown["hosts"]["ssh://alice@lab3"]
    assert "8 CPUs counted by the scheduler" in shown["nodes"]["lab-node-1"]
    assert "exited" in shown["nodes"]["lab-node-2"] and "4 CPUs" in shown["nodes"]["lab-node-2"]
    assert "across 3 Docker host(s)" in shown["head"] and "12 CPUs" in shown["head"]
    assert "No Docker engine answers" in shown["no_engine"]  # this machine's own engine


def test_worker_send_seconds_in_the_table_and_their_own_bar(page):
    shown = page["across_hosts"]
    assert "send s" in shown["header"]
    assert shown["send"] == {"10.0.5.5#0": "1.5", "10.0.5.7#0": "1"}  # two rounds summed
    bars = dict((name.split(" ")[0], x) for name, x in shown["bars"])
    assert bars["send"] == [1.5, 1.0] and bars["sweep"] == [2.0, 4.0]


def test_no_solve_says_how_to_run_one(page):
    for shown in (page["not_running"], page["no_engine"]):
        assert "No solve yet" in shown["solve"] and "sorctl solve" in shown["solve"]


def test_a_cluster_solves_memory_and_a_bytes_per_process(page):
    assert page["across_hosts"]["memory"] == [
        ["process", "peak memory", "A received"],
        ["host (sorctl solve)", "150.0 MB", "-"],
        ["client", "120.0 MB", "12.0 kB"],
        ["client container (cgroup)", "300.0 MB", "-"],
        ["worker 10.0.5.5#0", "90.0 MB", "6.0 kB"],
        ["worker 10.0.5.7#0", "80.0 MB", "5.0 kB"],
        ["all links", "-", "23.0 kB"],
    ]
