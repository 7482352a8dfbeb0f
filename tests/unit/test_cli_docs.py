"""docs/cli.md is generated from the typer app; it must match the CLI as it is."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts/gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_the_cli():
    rendered = _generator().render()
    on_disk = (ROOT / "docs" / "cli.md").read_text()
    assert rendered == on_disk, "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_docs.py"


def test_cli_reference_names_every_command():
    text = (ROOT / "docs" / "cli.md").read_text()
    for command in ["solve", "gen", "up", "status", "logs", "down", "scale", "images build"]:
        assert f"## `sorctl {command}`" in text
