"""Run the sorctl CLI in-process, through cli.main.main() and its error-to-exit-code mapping."""

from __future__ import annotations

import sys

import pytest

from sorctl.cli.main import main


def run_cli(args, capsys, monkeypatch):
    """(exit code, stdout, stderr) of `sorctl ARGS`."""
    monkeypatch.setattr(sys, "argv", ["sorctl", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err
