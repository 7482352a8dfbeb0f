"""sorctl as a user who never cloned the repository has it: the built wheel installed into a
fresh venv in a temporary directory outside the checkout, and from there `sorctl images build`,
`up --nodes 2`, `solve` of a generated system (answer checked against scipy), `down`. Also the
README's "From Python" example, run as written."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from sorctl.solver import io

ROOT = Path(__file__).resolve().parents[2]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def user(tmp_path_factory, docker_client):
    """(sorctl executable, working directory, environment) of a fresh venv outside the checkout."""
    work = tmp_path_factory.mktemp("user")
    assert ROOT not in work.parents
    # Build from a copy of the tracked files: a build leaves egg-info and build/ behind.
    tracked = run(["git", "ls-files", "-z"], cwd=ROOT).stdout.split("\0")
    src = work / "src"
    for name in filter(None, tracked):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", work / "dist", src])
    assert built.returncode == 0, built.stderr[-3000:]
    assert "Deprecat" not in built.stdout + built.stderr, "the build warns of our metadata"
    wheel = next((work / "dist").glob("sorctl-*-py3-none-any.whl"))
    assert run([sys.executable, "-m", "venv", work / "venv"]).returncode == 0
    pip = work / "venv" / "bin" / "pip"
    installed = run([pip, "install", "--disable-pip-version-check", wheel])
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert "deprecat" not in (installed.stdout + installed.stderr).lower()
    env = {**os.environ, "SORCTL_HOME": str(work / "home")}
    env.pop("PYTHONPATH", None)
    return work / "venv" / "bin" / "sorctl", work, env


def test_the_installed_wheel_builds_images_brings_up_a_cluster_and_solves(user):
    sorctl, work, env = user
    python = work / "venv" / "bin" / "python"
    where = run([python, "-c", "import sorctl; print(sorctl.__file__)"], cwd=work, env=env)
    assert str(work / "venv") in where.stdout, where.stdout  # not the checkout's package
    wheels_before = set(work.rglob("*.whl"))
    build = run([sorctl, "images", "build"], cwd=work, env=env)
    assert build.returncode == 0, build.stderr[-3000:]
    # caches go to the user's cache directory: nothing new here or in site-packages
    assert set(work.rglob("*.whl")) == wheels_before
    name = f"user-{secrets.token_hex(3)}"
    try:
        up = run([sorctl, "up", "--nodes", "2", "--name", name], cwd=work, env=env)
        assert up.returncode == 0, up.stderr[-3000:]
        gen = run([sorctl, "gen", "poisson2d", "--size", "40", "-o", "p.npz"], cwd=work, env=env)
        assert gen.returncode == 0, gen.stderr
        solve = run(
            [sorctl, "solve", "p.npz", "--cluster", name, "--json", "-o", "x.npz"],
            cwd=work,
            env=env,
        )
        assert solve.returncode == 0, solve.stderr[-3000:]
        assert f'"backend": "cluster:{name}"' in solve.stdout
        system = io.load_system(work / "p.npz")
        x = io.load_vector(work / "x.npz")
        want = spla.spsolve(system.A.tocsc(), system.b)
        assert np.linalg.norm(x - want) <= 1e-6 * np.linalg.norm(want)
    finally:
        down = run([sorctl, "down", "--name", name], cwd=work, env=env)
    assert down.returncode == 0, down.stderr
    assert f"cluster {name}: removed" in down.stdout


def test_the_readme_python_example_runs_as_written(docker_client, tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "README's From Python section has no python block"
    monkeypatch.setenv("SORCTL_HOME", str(tmp_path))
    proc = run([sys.executable, "-c", code[1]], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("True ")  # the local solve converged
    assert any(line.startswith("cluster:lab") for line in lines), proc.stdout
