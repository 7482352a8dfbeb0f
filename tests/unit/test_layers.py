"""The layers the package docstring states hold: import-linter's contracts in pyproject.toml
(numerics import neither Docker nor dispy nor the CLI; only sorctl.engine calls the Docker SDK;
the CLI reaches the engine through sorctl.api)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_import_sorctl_loads_no_heavy_layer():
    # The images import sorctl in every Python (the dispy shims): it must stay cheap.
    code = (
        "import sys, sorctl; "
        "heavy = [m for m in ('numpy', 'docker', 'typer', 'sorctl.api') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
