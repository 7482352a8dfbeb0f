"""Lints the GitHub Actions workflows, so a broken workflow fails here before GitHub."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str:
    # The venv's own copy first: pytest may run from .venv/bin without the venv on PATH.
    beside = Path(sys.executable).with_name("actionlint")
    exe = str(beside) if beside.exists() else shutil.which("actionlint")
    if exe is None:
        pytest.fail("actionlint is not installed: pip install -e '.[dev]'")
    return exe


def test_there_are_workflows():
    assert WORKFLOWS, "no workflow under .github/workflows"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow):
    run = subprocess.run(
        [_actionlint(), "-no-color", str(workflow)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    # Guards the test above: a workflow with an unknown job key and a bad expression must fail.
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    stepz: []\n"
        "    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    run = subprocess.run(
        [_actionlint(), "-no-color", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode != 0
