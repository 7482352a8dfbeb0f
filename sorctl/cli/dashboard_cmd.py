"""`sorctl dashboard`: serve the live web page (topology, running solve, finished solves)."""

from __future__ import annotations

from typing import Annotated

import typer

from sorctl.dashboard.server import DEFAULT_BIND, DEFAULT_PORT


def dashboard(
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="Show this cluster only (default: all).")
    ] = None,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free one).")
    ] = DEFAULT_PORT,
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            help="Address to listen on. Any but loopback requires the token the printed URL "
            "carries.",
        ),
    ] = DEFAULT_BIND,
) -> None:
    """Serve a web dashboard of the clusters and the solves, live, until Ctrl-C.

    Prints its URL (http://127.0.0.1:8700/) on stdout. Every asset comes from installed
    packages, so it works offline; needs `pip install 'sorctl[dashboard]'`.
    """
    from sorctl.dashboard.server import serve

    serve(cluster=cluster, port=port, bind=bind, announce=lambda u: print(u, flush=True))


def register(app: typer.Typer) -> None:
    """Add `sorctl dashboard` to the sorctl app."""
    app.command("dashboard")(dashboard)
