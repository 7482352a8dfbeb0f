"""The dashboard's web app (starlette, served by uvicorn): the page, its own scripts, plotly.js
from the installed plotly package (nothing from the internet), and JSON the page polls.

Bound to 127.0.0.1 by default. Bound elsewhere, every request needs the token the URL carries
(`?token=...`); the page's first load puts it in a cookie for the requests that follow.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from importlib import resources
from pathlib import Path
from typing import Any

from sorctl.dashboard import data
from sorctl.errors import InputError, SorctlError

DEFAULT_PORT = 8700
DEFAULT_BIND = "127.0.0.1"
COOKIE = "sorctl_dashboard"
STATIC = Path(str(resources.files("sorctl.dashboard") / "static"))


def need_extras() -> None:
    """SorctlError (a missing optional dependency) unless the dashboard's packages are there."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        raise SorctlError(
            f"sorctl dashboard needs {', '.join(missing)}: pip install 'sorctl[dashboard]'"
        )


def plotly_js() -> Path:
    """plotly.js as the plotly wheel ships it."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(*, cluster: str | None = None, token: str | None = None) -> Any:
    """The ASGI app. `cluster`: show that cluster only. `token`: required on every request."""
    need_extras()
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    vendor = plotly_js()

    async def index(request: Request) -> Response:
        response = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})
        if token is not None:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    def api_clusters(request: Request) -> Response:
        return JSONResponse({"only": cluster, **data.clusters(cluster)})

    def api_solves(request: Request) -> Response:
        return JSONResponse({"solves": data.solves()})

    def api_solve(request: Request) -> Response:
        try:
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            return PlainTextResponse("offset must be an integer", status_code=400)
        found = data.solve_records(request.path_params["feed_id"], offset)
        if found is None:
            return PlainTextResponse("no such solve", status_code=404)
        return JSONResponse(found)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    async def plotly(request: Request) -> Response:
        return FileResponse(vendor, media_type="text/javascript")

    class TokenCheck:
        """Every request carries the token: in the query (the printed URL) or the cookie."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and token is not None:
                request = Request(scope)
                given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
                if not hmac.compare_digest(given.encode(), token.encode()):
                    await PlainTextResponse("a token is required", status_code=403)(
                        scope, receive, send
                    )
                    return
            await self.app(scope, receive, send)

    routes = [
        Route("/", index),
        Route("/api/clusters", api_clusters),
        Route("/api/solves", api_solves),
        Route("/api/solves/{feed_id}", api_solve),
        Route("/vendor/plotly.min.js", plotly),
        Route("/favicon.ico", no_icon),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TokenCheck)])


def url(bind: str, port: int, token: str | None) -> str:
    host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/" + (f"?token={token}" if token else "")


def serve(
    *,
    cluster: str | None = None,
    port: int = DEFAULT_PORT,
    bind: str = DEFAULT_BIND,
    announce: Any = print,
) -> None:
    """Serve until Ctrl-C. InputError when the address or port cannot be bound, SorctlError when
    the optional packages are missing."""
    token = None if is_loopback(bind) else secrets.token_urlsafe(18)
    app = create_app(cluster=cluster, token=token)
    import uvicorn

    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"--bind {bind} --port {port}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]  # --port 0: a free port
    announce(url(bind, port, token))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
