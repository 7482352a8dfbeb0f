"""The cluster-only flags of `sorctl solve` (--inner-sweeps, --blocks, --checkpoint): refused
without a cluster, passed through to the cluster backend with one. No Docker: the seam between
the command and cli.solve_cluster is replaced here (tests/integration runs the real thing)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cli import solve_cluster
from solver import gallery, io
from solver.result import SolveResult
from tests.cli_runner import run_cli


@pytest.fixture
def system(tmp_path):
    A, b = gallery.poisson2d(6)
    path = tmp_path / "p.npz"
    io.save_system(path, A, b)
    return path


@pytest.mark.parametrize(
    "flags", [["--inner-sweeps", "2"], ["--blocks", "4"], ["--checkpoint", "ck.npz"]]
)
def test_cluster_flags_without_a_cluster_are_bad_input(system, flags, capsys, monkeypatch):
    code, out, err = run_cli(["solve", system, "--local", *flags], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert flags[0] in err and "cluster" in err and "Traceback" not in err


def test_cluster_flags_reach_the_cluster_backend(system, tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_run(info, sys_, **kw):
        seen.update(kw)
        n = sys_.A.shape[0]
        return SolveResult(np.zeros(n), True, "rtol", 3, [1e-9], 1.5, "user", n, 0, 0.1,
                           backend="cluster:fake")  # fmt: skip

    monkeypatch.setattr(solve_cluster, "find_running", lambda name: SimpleNamespace(name="fake"))
    monkeypatch.setattr(solve_cluster, "run", fake_run)
    ck = tmp_path / "ck.npz"
    args = ["solve", system, "--json", "--omega", "1.5", "--inner-sweeps", "3", "--blocks", "6",
            "--checkpoint", ck]  # fmt: skip
    code, out, _ = run_cli(args, capsys, monkeypatch)
    assert code == 0 and '"backend": "cluster:fake"' in out
    assert seen["inner_sweeps"] == 3 and seen["blocks"] == 6 and str(seen["checkpoint"]) == str(ck)
