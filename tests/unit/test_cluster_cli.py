"""Cluster commands reject bad flags with one line and exit 2, before touching the engine."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--nodes", "0"], "at least 1 node"),
        (["up", "--subnets", "2"], "--subnets needs --relay"),
        (["up", "--name", "Bad Name"], "cluster name"),
        (["up", "--nodes", "2", "--relay", "--subnets", "3"], "empty subnets"),
        (["scale", "--nodes", "0"], "at least 1 node"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args, message, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "SORCTL_HOME": str(tmp_path),
            "DOCKER_HOST": "unix:///nonexistent",
        },
    )
    assert res.returncode == 2
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def _hosts_cluster(home) -> None:
    """A cluster across hosts as `up --host` leaves it in SORCTL_HOME (its host list)."""
    from sorctl.cluster import hostplan
    from sorctl.cluster.hosts import parse_hosts

    specs = parse_hosts(["ssh://a@lab1", "ctx2"])
    addrs = {"ssh://a@lab1": "10.0.4.2", "ctx2": "10.0.5.7"}
    plan = hostplan.make_host_plan("hs", specs, addrs, specs[0].endpoint, version="1")
    d = home / "clusters" / "hs"
    d.mkdir(parents=True)
    hostplan.save_hosts(d, plan, specs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scale", "--name", "hs", "--nodes", "3"], "--nodes does not apply"),
        (["scale", "--name", "hs"], "give --add-host"),
        (["scale", "--name", "hs", "--remove-host", "ssh://a@lab1"], "runs the scheduler"),
        (["scale", "--name", "hs", "--remove-host", "ctx9"], "not a host of the cluster"),
        (["scale", "--name", "hs", "--add-host", "ctx2"], "already a host"),
        (["scale", "--name", "hs", "--add-host", "ftp://x"], "scheme"),
        (["scale", "--name", "one", "--add-host", "ctx3"], "are for a cluster made with --host"),
        (["scale", "--name", "one"], "give --nodes N"),
    ],
)
def test_scale_by_hosts_bad_requests_exit_2_with_one_line(args, message, tmp_path):
    _hosts_cluster(tmp_path)
    test_bad_flags_exit_2_with_one_line(args, message, tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--host", "ctx1", "--relay"], "needs --relay-host"),
        (["up", "--relay-host", "ctx2"], "--relay-host goes with --host"),
        (["up", "--host", "ctx1", "--relay-host", "ctx2"], "--relay-host needs --relay"),
        (["up", "--host", "ctx1", "--relay", "--relay-host", "ctx1"], "cannot share one address"),
    ],
)
def test_relay_with_hosts_bad_flags_exit_2_with_one_line(args, message, tmp_path):
    test_bad_flags_exit_2_with_one_line(args, message, tmp_path)
