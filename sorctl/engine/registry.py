"""A container registry the user runs: whether it answers (the probe), and images through it
(`--registry HOST:PORT`) instead of a save here and a load there over each engine's
connection: this machine's engine pushes the role images once, as
HOST:PORT/sorctl-ROLE:VERSION, and every host's engine pulls them itself.

The probe: whether a Docker registry answers at HOST[:PORT]: its `/v2/` endpoint, which every
registry (Distribution API v2) serves, with or without credentials.

Over https (trusting, as the engine does, /etc/docker/certs.d/HOST[:PORT]/ca.crt besides the
system's CAs); with insecure=True plain http too when https does not answer (what the engine's
`insecure-registries` setting allows). One short request, no proxy (the engine has its own
proxy settings), nothing pulled.

Pushes and pulls: the engine that pulls (or pushes) decides TLS or plain HTTP: it speaks HTTPS
unless its daemon.json lists the registry under `insecure-registries` (127.0.0.0/8 is listed
by default). A plain-HTTP registry that an engine does not list is refused with "server gave
HTTP response to HTTPS client"; that, and every other failure, becomes one line naming the
engine, the registry and the fix.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import docker

from sorctl.engine import images
from sorctl.engine.images import (
    DEFAULT_BASE,
    OFFLINE_BASE,
    image_ref,
    require_images,
    sorctl_version,
)
from sorctl.engine.ship import Progress, Shipped, missing
from sorctl.errors import EngineError, ImageError, InputError
from sorctl.names import LABEL_VERSION

# Every v2 registry sends it, on 200 and on 401 alike.
API_HEADER = "Docker-Distribution-API-Version"
CERTS_D = Path("/etc/docker/certs.d")
REFUSED_HTTP = "server gave HTTP response to HTTPS client"
# How an engine says it got no answer at all (Go's net errors, and its own timeouts).
_UNREACHABLE = ("dial tcp", "no route to host", "connection refused", "i/o timeout", "timeout",
                "no such host", "network is unreachable", "EOF")  # fmt: skip

Log = Callable[[str], None]


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


def parse_address(text: str) -> str:
    """HOST:PORT as given (check_address's, with the port: the engine then takes HOST:PORT for
    a registry and not for a Docker Hub user), or InputError saying what it looks like."""
    try:
        address = check_address(text)
    except InputError:
        address = ""
    port = address.rpartition(":")[2]
    if address.endswith("]") or not port.isdigit() or int(port) == 0:
        raise InputError(
            f"--registry {text!r}: give the registry as HOST:PORT (e.g. 10.0.0.5:5000), "
            "without http:// or a path"
        )
    return address


def remote_ref(registry: str, role: str, version: str | None = None) -> str:
    """HOST:PORT/sorctl-ROLE:VERSION: the role's image as the registry holds it."""
    return f"{registry}/{image_ref(role, version)}"


def describe(address: str, timeout: float = 3.0) -> str:
    """One line: whether the registry speaks TLS or plain HTTP, as seen from this machine (the
    engines that pull decide for themselves; this says what they will meet)."""
    https = answers(address, timeout=timeout)
    if https is None:
        return f"registry {address}: TLS"
    why = https.removeprefix(f"registry {address}: ")
    if "TLS verification failed" in why:  # TLS, with a CA this machine lacks
        return (
            f"registry {address}: TLS, its certificate not checked here ({why}); each engine "
            f"checks it against /etc/docker/certs.d/{address}/ca.crt or the system's CAs"
        )
    # plain HTTP only when something answered but not in TLS (a refused or silent address
    # would fail the same way again)
    if "no TLS there" in why and answers(address, insecure=True, timeout=timeout) is None:
        return (
            f"registry {address}: plain HTTP (an engine that pulls or pushes must list it under "
            "insecure-registries)"
        )
    return f"registry {address}: no answer from this machine ({why})"


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no message)"])[0][:300]


def absent(message: str) -> bool:
    """Whether an engine's pull failed because the registry lacks that image (and only that)."""
    return any(
        sign in message
        for sign in ("manifest unknown", "name unknown", "not found", "does not exist")
    )


def explain(who: str, registry: str, message: str, ref: str, *, here: bool = False) -> str:
    """The engine's failure with the registry as one line with its fix. who: "host X" or
    "this machine's engine"; here: the engine is this machine's (the fix is made here)."""
    text = _first_line(message)
    where = "this machine" if here else "that host"
    if REFUSED_HTTP in text:
        return (
            f"{who}: the registry {registry} speaks plain HTTP and the engine wants HTTPS: on "
            f'{where} add "insecure-registries": ["{registry}"] to /etc/docker/daemon.json and '
            "reload dockerd (or serve the registry over TLS)"
        )
    if "x509" in text or "certificate" in text:
        return (
            f"{who}: the registry {registry}'s TLS certificate is not trusted ({text}): on "
            f"{where} put its CA in /etc/docker/certs.d/{registry}/ca.crt"
        )
    if absent(text):
        return (
            f"{who}: the registry {registry} has no {ref}: run "
            f"`sorctl images push --registry {registry}`"
        )
    if "unauthorized" in text or "basic auth" in text or "authentication required" in text:
        return (
            f"{who}: the registry {registry} wants a login ({text}): "
            f"`docker login {registry}` on {where}"
        )
    if any(sign in text for sign in _UNREACHABLE):
        return f"{who}: cannot reach the registry {registry}: {text}"
    return f"{who}: the registry {registry}: {text}"


def _stream(
    lines: Iterable[dict], on_bytes: Callable[[int], None] | None, moved: dict[str, int]
) -> str | None:
    """Reads an engine's push or pull progress; the error it ends with, if any. Bytes are what
    moved over the network, summed over layers (a layer the other side has moves nothing)."""
    for line in lines:
        if "error" in line:
            return str(line.get("error") or line.get("errorDetail", {}).get("message", ""))
        detail = line.get("progressDetail") or {}
        if line.get("status") in ("Downloading", "Pushing") and "current" in detail:
            moved[line.get("id", "")] = int(detail["current"])
            if on_bytes:
                on_bytes(sum(moved.values()))
    return None


def push(
    local: docker.DockerClient,
    registry: str,
    roles: Iterable[str],
    progress: Progress | None = None,
) -> Shipped:
    """This machine's images of `roles` pushed to the registry as HOST:PORT/sorctl-ROLE:VERSION
    (the registry tags are taken off here again: the local names stay sorctl-ROLE:VERSION)."""
    roles = list(roles)
    require_images(local, roles)
    version = sorctl_version()
    t0 = time.monotonic()
    moved: dict[str, int] = {}  # layer -> bytes pushed, over all roles
    report = (lambda n: progress(registry, n)) if progress else None
    for role in roles:
        repo = f"{registry}/sorctl-{role}"
        local.api.tag(image_ref(role), repo, version)
        try:
            lines = local.api.push(repo, tag=version, stream=True, decode=True)
            error = _stream(lines, report, moved)
        except docker.errors.APIError as exc:
            error = exc.explanation or str(exc)
        finally:
            local.api.remove_image(f"{repo}:{version}", noprune=True)
        if error:
            raise EngineError(
                explain("this machine's engine", registry, error, f"{repo}:{version}", here=True)
            )
    return Shipped(registry, [remote_ref(registry, r) for r in roles], sum(moved.values()),
                   time.monotonic() - t0, how="pushed")  # fmt: skip


def pull(
    local: docker.DockerClient,
    remote: docker.DockerClient,
    host: str,
    registry: str,
    roles: Iterable[str],
    progress: Progress | None = None,
) -> Shipped:
    """The images of `roles` the host lacks (or has with other inputs than this machine's),
    pulled by the host's engine from the registry and named sorctl-ROLE:VERSION there. Each
    pulled image is checked before it gets that name: this version's label and the inputs of
    this machine's image; one that fails is removed again."""
    roles = list(roles)
    require_images(local, roles)
    refs = missing(local, remote, roles)
    if not refs:
        return Shipped(host, [], 0, 0.0, how="pulled")
    version = sorctl_version()
    t0 = time.monotonic()
    moved: dict[str, int] = {}  # layer -> bytes downloaded, over all roles
    report = (lambda n: progress(host, n)) if progress else None
    for role in [r for r in roles if image_ref(r) in refs]:
        repo = f"{registry}/sorctl-{role}"
        pulled = f"{repo}:{version}"
        try:
            lines = remote.api.pull(repo, tag=version, stream=True, decode=True)
            error = _stream(lines, report, moved)
        except docker.errors.APIError as exc:
            error = exc.explanation or str(exc)
        if error:
            raise EngineError(explain(f"host {host}", registry, error, pulled))
        image = remote.images.get(pulled)
        labels = image.labels or {}
        problem = None
        if labels.get(LABEL_VERSION) != version:
            problem = f"carries sorctl {labels.get(LABEL_VERSION) or '(no version label)'}"
        elif labels != (local.images.get(image_ref(role)).labels or {}):
            problem = "was built from other inputs than this machine's"
        if problem:
            remote.api.remove_image(pulled)
            raise ImageError(
                f"host {host}: {pulled} {problem}, not this machine's {image_ref(role)}: "
                f"run `sorctl images push --registry {registry}`"
            )
        remote.api.tag(pulled, f"sorctl-{role}", version, force=True)
        remote.api.remove_image(pulled, noprune=True)
    still = missing(local, remote, roles)
    if still:
        raise EngineError(
            f"host {host}: after pulling from {registry}, still missing {', '.join(still)}"
        )
    return Shipped(host, refs, sum(moved.values()), time.monotonic() - t0, how="pulled")


def choose_base(client: docker.DockerClient, registry: str, log: Log) -> str:
    """The base to build on with --registry: HOST:PORT/python:3.11-slim, else
    HOST:PORT/sorctl-base:bookworm, pulled into this machine's engine; when the registry has
    neither, today's way (images.choose_base). A registry that cannot be reached or that the
    engine refuses is an ImageError: it was asked for."""
    log(describe(registry))
    for name in (DEFAULT_BASE, OFFLINE_BASE):
        ref = f"{registry}/{name}"
        repo, _, tag = ref.rpartition(":")
        try:
            client.images.get(ref)
            log(f"base: {ref} (from the registry, pulled earlier)")
            return ref
        except docker.errors.ImageNotFound:
            pass
        try:
            error = _stream(client.api.pull(repo, tag=tag, stream=True, decode=True), None, {})
        except docker.errors.APIError as exc:
            error = exc.explanation or str(exc)
        if error is None:
            log(f"base: {ref} (pulled from the registry)")
            return ref
        if not absent(error):
            raise ImageError(explain("this machine's engine", registry, error, ref, here=True))
    log(f"base: the registry {registry} has neither {DEFAULT_BASE} nor {OFFLINE_BASE}")
    return images.choose_base(client, log)
