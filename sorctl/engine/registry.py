"""Whether a Docker registry answers at HOST[:PORT]: its `/v2/` endpoint, which every registry
(Distribution API v2) serves, with or without credentials.

Over https (trusting, as the engine does, /etc/docker/certs.d/HOST[:PORT]/ca.crt besides the
system's CAs); with insecure=True plain http too when https does not answer (what the engine's
`insecure-registries` setting allows). One short request, no proxy (the engine has its own
proxy settings), nothing pulled.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from sorctl.errors import InputError

# Every v2 registry sends it, on 200 and on 401 alike.
API_HEADER = "Docker-Distribution-API-Version"
CERTS_D = Path("/etc/docker/certs.d")


def check_address(address: str) -> str:
    """HOST or HOST:PORT as given (InputError otherwise): no scheme, no path."""
    text = address.strip()
    split = urlsplit(f"//{text}")
    try:
        split.port  # noqa: B018 -- raises for a port that is not a number or out of range
    except ValueError:
        raise InputError(f"registry {address!r}: bad port") from None
    if not text or "://" in text or not split.hostname or split.path or split.query:
        raise InputError(f"registry {address!r}: not HOST[:PORT]")
    return text


def _opener(host: str) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context()
    ca = CERTS_D / host / "ca.crt"
    if ca.is_file():
        context.load_verify_locations(cafile=str(ca))
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )


def _probe(host: str, scheme: str, timeout: float) -> str | None:
    url = f"{scheme}://{host}/v2/"
    try:
        with _opener(host).open(url, timeout=timeout) as response:
            headers = response.headers
    except urllib.error.HTTPError as exc:  # 401: a registry that wants credentials answers so
        headers = exc.headers
    except urllib.error.URLError as exc:
        return _reason(exc.reason)
    except (OSError, ValueError) as exc:  # timeouts, resets, a garbled reply
        return _reason(exc)
    if headers.get(API_HEADER, "").startswith("registry/2"):
        return None
    return f"something answers {url} but it is no registry (no {API_HEADER} header)"


def _reason(exc: object) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS verification failed (a self-signed or unknown certificate)"
    if isinstance(exc, ssl.SSLError):
        return f"no TLS there ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return "no answer (timed out)"
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def answers(address: str, *, insecure: bool = False, timeout: float = 3.0) -> str | None:
    """None when a registry answers at `address` (HOST[:PORT]), else one line saying why not.
    InputError for an address that is not HOST[:PORT]."""
    host = check_address(address)
    https = _probe(host, "https", timeout)
    if https is None:
        return None
    if not insecure:
        return f"registry {host}: https: {https}"
    plain = _probe(host, "http", timeout)
    if plain is None:
        return None
    return f"registry {host}: https: {https}; http: {plain}"
