"""Write docs/cli.md, the reference of every sorctl command and flag, from the typer app itself.

Run after changing a command: `.venv/bin/python scripts/gen_cli_docs.py`. A unit test fails
when docs/cli.md no longer matches the CLI.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

import typer.main
from typer.cli import get_docs_for_click

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "cli.md"


def render() -> str:
    from sorctl.cli.main import app

    command = typer.main.get_command(app)
    ctx = typer.Context(command, info_name="sorctl")
    text = get_docs_for_click(obj=command, ctx=ctx, name="sorctl", title="sorctl command reference")
    # typer escapes HTML for its own site; these pages are plain Markdown.
    return html.unescape(text).rstrip() + "\n"


def main() -> int:
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
