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
