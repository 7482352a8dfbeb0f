"""Entry point: builds the typer app from the command modules and maps errors to exit codes."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from sorctl.cli import cluster_cmd, dashboard_cmd, doctor_cmd, gen_cmd, images_cmd, solve_cmd
from sorctl.cli.exit_codes import EXIT_FAILURE, EXIT_INTERRUPTED, exit_code
from sorctl.errors import SorctlError

app = typer.Typer(
    name="sorctl",
    help="A dispy cluster in one command, and a distributed SOR solver that runs on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
solve_cmd.register(app)
gen_cmd.register(app)
cluster_cmd.register(app)
images_cmd.register(app)
dashboard_cmd.register(app)
doctor_cmd.register(app)

# soft_wrap: an error stays one line on stderr however long it is (no wrapping at 80 columns).
err = Console(stderr=True, soft_wrap=True)


@app.command("version")
def version() -> None:
    """Print sorctl's version."""
    from importlib.metadata import version as dist_version

    print(f"sorctl {dist_version('sorctl')}")


def main() -> None:
    """Console-script entry: one line on stderr and a meaningful exit code, never a traceback."""
    try:
        app()
    except SorctlError as exc:
        err.print(f"sorctl: error: {exc}", markup=False, highlight=False)
        for note in getattr(exc, "__notes__", ()):  # a line below it: what to try next
            err.print(note, markup=False, highlight=False)
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        err.print("sorctl: interrupted", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # last resort: still one line, and SORCTL_DEBUG=1 shows the rest
        import os

        if os.environ.get("SORCTL_DEBUG"):
            raise
        err.print(f"sorctl: error: {type(exc).__name__}: {exc}", markup=False, highlight=False)
        sys.exit(EXIT_FAILURE)


if __name__ == "__main__":
    main()
