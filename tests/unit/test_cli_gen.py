"""`sorctl gen` writes systems `sorctl solve` reads, atomically, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from sorctl.solver.io import load_system
from tests.cli_runner import run_cli


@pytest.mark.parametrize(
    "kind,size,n",
    [
        ("poisson2d", 5, 25),
        ("poisson3d", 3, 27),
        ("anisotropic2d", 4, 16),
        ("random-spd", 50, 50),
        ("dense-spd", 20, 20),
    ],
)
def test_gen_writes_a_loadable_system(kind, size, n, tmp_path, capsys, monkeypatch):
    out = tmp_path / f"{kind}.npz"
    code, stdout, err = run_cli(["gen", kind, "--size", size, "-o", out], capsys, monkeypatch)
    assert code == 0 and stdout == "" and str(out) in err
    system = load_system(out)
    assert system.n == n and system.b.shape == (n,)
    assert isinstance(system.A, np.ndarray) == (kind == "dense-spd")
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left


@pytest.mark.parametrize(
    "args,message",
    [
        (["gen", "poisson2d", "--size", "0", "-o", "x.npz"], "--size"),
        (["gen", "poisson9d", "--size", "4", "-o", "x.npz"], "poisson9d"),
        (["gen", "poisson2d", "--size", "4", "-o", "x.txt"], "must end in .npz"),
        (["gen", "poisson2d", "--size", "4", "-o", "missing/x.npz"], "does not exist"),
        (["gen", "dense-spd", "--size", "10000000", "-o", "x.npz"], "GB of memory"),
    ],
)
def test_gen_bad_arguments_exit_2(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
