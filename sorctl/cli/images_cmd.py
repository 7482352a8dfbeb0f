"""`sorctl images build | list | rm | push`: progress on stderr, answers on stdout."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sorctl import api
from sorctl.cli.build_view import BuildProgress, show_failure, summary_table
from sorctl.cli.hosts_cmd import shipping_progress
from sorctl.errors import BuildError

images_app = typer.Typer(
    help="Build, list, remove and push the sorctl images.", no_args_is_help=True
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _log(line: str) -> None:
    err.print(line, markup=False, soft_wrap=True)


@images_app.command("build")
def build_cmd(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when unchanged.")] = False,
    role: Annotated[
        list[str] | None, typer.Option("--role", help="Only this role (repeatable).")
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="HOST:PORT of a container registry to take the base image from "
            "(HOST:PORT/python:3.11-slim, else HOST:PORT/sorctl-base:bookworm); without "
            "either there, the base is found as without --registry.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Print every line Docker prints (stderr).")
    ] = False,
) -> None:
    """Build the role images; skips those whose inputs are unchanged. Shows a line per role
    (its step, elapsed time) on stderr and a summary table on stdout; the full log goes to a
    file in the user's cache directory (its path is printed)."""
    try:
        if verbose:
            results = api.build_images(
                role or None, force=force, log=_log, registry=registry, verbose=True
            )
        else:
            with BuildProgress(err) as view:
                results = api.build_images(role or None, force=force, log=view.message,
                                           registry=registry, watch=view)  # fmt: skip
    except BuildError as exc:
        show_failure(err, exc.step, exc.tail)
        raise
    Console().print(summary_table(results))
    if not verbose and view.log_path is not None:
        err.print(f"full log: {view.log_path}", markup=False, highlight=False)


@images_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Show the sorctl images: role, version, the pinned packages they carry, size, created."""
    rows = api.list_images()
    if as_json:
        print(json.dumps({"version": dist_version("sorctl"), "images": [asdict(r) for r in rows]}))
        return
    table = Table("role", "version", "packages", "size MB", "created", "image")
    for r in rows:
        if r.present:
            created = (r.created or "").replace("T", " ")[:16]
            packages = " ".join(f"{k}={v}" for k, v in r.packages.items()) or "-"
            table.add_row(r.role, r.version or "?", packages, f"{r.size_mb:.0f}", created, r.ref)
        else:
            table.add_row(r.role, "[red]missing[/red]", "", "", "", r.ref)
    Console().print(table)


@images_app.command("rm")
def rm_cmd(
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Every sorctl version's images.")
    ] = False,
    base: Annotated[bool, typer.Option("--base", help="Also the offline base image.")] = False,
) -> None:
    """Remove this version's role images (stop clusters that use them first)."""
    if not api.remove_images(all_versions=all_versions, base=base, log=_log):
        err.print("no sorctl images to remove")


@images_app.command("push")
def push_cmd(
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="A Docker endpoint: ssh://USER@HOST[:PORT], tcp://HOST:PORT or a docker "
            "context name (repeatable).",
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="HOST:PORT of a container registry: push the images there as "
            "HOST:PORT/sorctl-ROLE:VERSION (for up --host ... --registry).",
        ),
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="Only this role (repeatable; default: the hosts' roles)."),
    ] = None,
    tlscacert: Annotated[
        Path | None, typer.Option("--tlscacert", help="CA of the hosts' TLS engines.")
    ] = None,
    tlscert: Annotated[Path | None, typer.Option("--tlscert", help="TLS client certificate.")] = (
        None
    ),
    tlskey: Annotated[Path | None, typer.Option("--tlskey", help="TLS client key.")] = None,
) -> None:
    """Send this version's images to other machines' Docker engines that lack them (docker
    save here, docker load there, over the same connection: no registry needed), or push them
    to a container registry (--registry)."""
    with shipping_progress("{}") as progress:
        shipped = api.push_images(
            host or [], roles=role or None, tls_files=(tlscacert, tlscert, tlskey),
            progress=progress, warn=_log, registry=registry,
        )  # fmt: skip
    for done in shipped:
        what = " ".join(done.refs) if done.refs else "up to date"
        mb = done.bytes / 1e6
        print(f"{done.host}\t{what}\t{mb:.0f} MB\t{done.seconds:.1f}s")


def register(app: typer.Typer) -> None:
    """Add `sorctl images ...` to the sorctl app."""
    app.add_typer(images_app, name="images")
