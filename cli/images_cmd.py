"""`sorctl images build | list | rm`: progress on stderr, answers on stdout."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli import engine
from cli.errors import EXIT_BAD_INPUT, UserError

images_app = typer.Typer(help="Build, list and remove the sorctl images.", no_args_is_help=True)
err = Console(stderr=True, highlight=False)


@images_app.command("build")
def build_cmd(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when unchanged.")] = False,
    role: Annotated[
        list[str] | None, typer.Option("--role", help="Only this role (repeatable).")
    ] = None,
) -> None:
    """Build the role images; skips those whose inputs are unchanged."""
    from cli import images

    for r in role or []:
        if r not in images.ROLES:
            raise UserError(
                f"unknown role {r!r} (roles: {', '.join(images.ROLES)})", EXIT_BAD_INPUT
            )
    results = images.build(
        role or None,
        force=force,
        log=lambda line: err.print(line, markup=False),
        client=engine.connect(),
    )
    for done in results:
        print(f"{done.ref}\t{done.action}\t{done.seconds:.1f}s")


@images_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Show the sorctl images: role, tag, version, size, whether this version's are present."""
    from cli import images

    rows = images.list_images(engine.connect())
    if as_json:
        print(json.dumps({"version": images.sorctl_version(), "images": [asdict(r) for r in rows]}))
        return
    table = Table("role", "version", "size MB", "created", "image")
    for r in rows:
        if r.present:
            created = (r.created or "").replace("T", " ")[:16]
            table.add_row(r.role, r.version or "?", f"{r.size_mb:.0f}", created, r.ref)
        else:
            table.add_row(r.role, "[red]missing[/red]", "", "", r.ref)
    Console().print(table)


@images_app.command("rm")
def rm_cmd(
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Every sorctl version's images.")
    ] = False,
    base: Annotated[bool, typer.Option("--base", help="Also the offline base image.")] = False,
) -> None:
    """Remove this version's role images (stop clusters that use them first)."""
    from cli import images

    removed = images.remove_images(
        engine.connect(),
        all_versions=all_versions,
        base=base,
        log=lambda line: err.print(line, markup=False),
    )
    if not removed:
        err.print("no sorctl images to remove")


def register(app: typer.Typer) -> None:
    """Add `sorctl images ...` to the sorctl app."""
    app.add_typer(images_app, name="images")
