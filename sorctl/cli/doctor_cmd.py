"""`sorctl doctor`: whether this machine (and other machines' engines) can run sorctl, one line
per check with its fix, or one JSON document; exit 1 when a check fails."""

from __future__ import annotations

import json
import shlex
from importlib.metadata import version as dist_version
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from sorctl import api
from sorctl.cli import hosts_cmd
from sorctl.cluster.machine import FAIL, OK, WARN, Check, exit_status

# What `sorctl up` (and scripts/demo.sh) add below an engine, image or port failure.
HINT = "run `sorctl doctor` to check this machine"

MARKS = {OK: ("✓", "green"), WARN: ("!", "yellow"), FAIL: ("✗", "red")}
out = Console(highlight=False, soft_wrap=True)


def hint(hosts: list[str] | None = None, registry: str | None = None) -> str:
    """HINT, or for a cluster across hosts the doctor command that checks them too (and the
    registry they pull from, over plain http too: that is the engines' choice)."""
    if not hosts:
        return HINT
    args = " ".join(f"--host {shlex.quote(h.partition('=')[0])}" for h in hosts)
    if registry:
        args += f" --registry {shlex.quote(registry)} --insecure-registry"
        return f"run `sorctl doctor {args}` to check this machine, the hosts and the registry"
    return f"run `sorctl doctor {args}` to check this machine and the hosts"


def lines(check: Check) -> list[str]:
    """The check as printed: `✓ name: detail`, and `    fix: ...` below a warning or failure."""
    head = f"{MARKS[check.status][0]} {check.name}: {check.detail}"
    return [head, f"    fix: {check.fix}"] if check.fix and check.status != OK else [head]


def summary(checks: list[Check]) -> str:
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    if not failed and not warned:
        return f"all {len(checks)} checks passed"
    return f"{failed} failed, {warned} warning(s), {len(checks) - failed - warned} passed"


def document(checks: list[Check]) -> dict:
    """What --json prints."""
    return {
        "sorctl": dist_version("sorctl"),
        "ok": exit_status(checks) == 0,
        "checks": [c.to_dict() for c in checks],
    }


def doctor(
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="Check this Docker host too (repeatable; ssh://USER@HOST[:PORT], "
            "tcp://HOST:PORT or a docker context name, as for `sorctl up --host`).",
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", help="Check that a Docker registry answers at HOST:PORT."),
    ] = None,
    insecure_registry: Annotated[
        bool,
        typer.Option("--insecure-registry", help="Try the registry over plain http too."),
    ] = False,
    tlscacert: hosts_cmd.TLSCaOpt = None,
    tlscert: hosts_cmd.TLSCertOpt = None,
    tlskey: hosts_cmd.TLSKeyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Check that this machine can run sorctl: the Docker engine, the images, a base image to
    build on, free disk, dispy's ports, the config directory; and each --host's engine."""
    checks = api.doctor(
        host or [], registry=registry, insecure_registry=insecure_registry,
        tls_files=(tlscacert, tlscert, tlskey),
    )  # fmt: skip
    if as_json:
        print(json.dumps(document(checks), indent=2))
    else:
        for check in checks:
            mark, style = MARKS[check.status]
            for i, line in enumerate(lines(check)):
                text = Text(line)
                if i == 0:
                    text.stylize(style, 0, len(mark))
                out.print(text)
        out.print(summary(checks))
    raise typer.Exit(exit_status(checks))


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
