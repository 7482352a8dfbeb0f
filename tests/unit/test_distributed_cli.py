"""The cluster-only flags of `sorctl solve` (--inner-sweeps, --blocks, --checkpoint): refused
without a cluster, passed through to the cluster backend with one. No Docker: the seam between
the command and the cluster (sorctl.api.cluster_for_solve) is replaced here (tests/integration
runs the real thing)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sorctl import api
from sorctl.solver import gallery, io
from sorctl.solver.result import SolveResult
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

    def solve_system(sys_, options, **kw):
        seen.update(kw, options=options)
        n = sys_.n  # a System, or the SystemFile of a CSR .npz checked in windows
        return SolveResult(np.zeros(n), True, "rtol", 3, [1e-9], 1.5, "user", n, 0, 0.1,
                           backend="cluster:fake")  # fmt: skip

    fake = SimpleNamespace(name="fake", solve_system=solve_system)
    monkeypatch.setattr(api, "cluster_for_solve", lambda name: fake)
    ck = tmp_path / "ck.npz"
    args = ["solve", system, "--json", "--omega", "1.5", "--inner-sweeps", "3", "--blocks", "6",
            "--checkpoint", ck]  # fmt: skip
    code, out, _ = run_cli(args, capsys, monkeypatch)
    assert code == 0 and '"backend": "cluster:fake"' in out
    opts = seen["options"]
    assert opts.inner_sweeps == 3 and opts.blocks == 6 and opts.omega == 1.5
    assert str(seen["checkpoint"]) == str(ck)
