"""Placeholder: filled in by the issue that owns this command group."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the sorctl app."""
