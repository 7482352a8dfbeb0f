"""`sorctl doctor`'s checks that need Docker: the engine, the images, a base to build on, the
engine's free disk, and other machines' engines (`--host`). Together with this machine's own
checks (sorctl.cluster.machine) in the order `sorctl doctor` prints them.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import docker
import requests

from sorctl.cluster import machine
from sorctl.cluster.hosts import HostSpec
from sorctl.cluster.machine import FAIL, OK, WARN, Check
from sorctl.engine import images, multihost, registry, ship
from sorctl.engine.connect import TLSFiles, connect, try_connect, why
from sorctl.engine.hosts import on_each
from sorctl.errors import EngineError

HOST_TIMEOUT_S = 10.0  # a host that says nothing for this long is reported, not waited for
WORK_TIMEOUT_S = 60.0  # a host that answered: each request after (a probe container runs)
ENGINE_FIX = (
    "start the Docker engine (`systemctl start docker`) or point DOCKER_HOST at one; "
    "as a user, join the `docker` group"
)
HOST_FIXES = {
    "ssh": "check that `ssh {ssh} docker version` works from here (a key in ssh-agent or ~/.ssh)",
    "tls": "check that `docker -H {endpoint} --tlsverify version` works from here "
    "(--tlscacert/--tlscert/--tlskey or DOCKER_CERT_PATH)",
    "tcp": "check that `docker -H {endpoint} version` works from here",
    "context": "check that `docker --context {endpoint} version` works from here",
}


def check_engine(client: docker.DockerClient | None, reason: str = "") -> Check:
    if client is None:
        return Check("engine", FAIL, reason, ENGINE_FIX)
    info = client.info()
    return Check(
        "engine", OK, f"Docker {info.get('ServerVersion', '?')}, cgroup v"
        f"{info.get('CgroupVersion', '?')}, storage {info.get('Driver', '?')}, data "
        f"{info.get('DockerRootDir', '?')}",
    )  # fmt: skip


def check_images(client: docker.DockerClient) -> list[Check]:
    """One line per role image of this sorctl version: present and built for it."""
    rows = {r.ref: r for r in images.list_images(client) if r.present}
    out = []
    for role in images.ROLES:
        ref = images.image_ref(role)
        problem = images.image_problem(client, role)
        if problem is not None:
            out.append(Check(f"image {ref}", FAIL, problem[0].removeprefix(f"image {ref} "),
                             problem[1]))  # fmt: skip
            continue
        row = rows.get(ref)
        size = f", {row.size_mb:.0f} MB, built {row.created}" if row else ""
        out.append(Check(f"image {ref}", OK, f"built for sorctl {images.sorctl_version()}{size}"))
    return out


def check_registry(address: str, insecure: bool) -> Check:
    reason = registry.answers(address, insecure=insecure)
    if reason is None:
        return Check(f"registry {address}", OK, "answers (Docker registry API v2)")
    return Check(
        f"registry {address}", FAIL, reason.removeprefix(f"registry {address}: "),
        "check the address and that the registry runs there; plain http needs "
        "--insecure-registry (and the engine's insecure-registries setting)",
    )  # fmt: skip


def check_base(client: docker.DockerClient | None, registry_ok: bool | None) -> Check:
    """Whether a build has a base image: in the engine, from --registry, or made with
    debootstrap (images.choose_base's order)."""
    name = "base"
    if client is not None:
        for base in (images.DEFAULT_BASE, images.OFFLINE_BASE):
            if images.has_image(client, base):
                return Check(name, OK, f"{base} is in the engine")
    missing = (
        f"neither {images.DEFAULT_BASE} nor {images.OFFLINE_BASE} is in the engine"
        if client is not None
        else "no engine to look for a base image in"
    )
    if registry_ok:
        return Check(name, OK, f"{missing}; the registry answers")
    if images.has_debootstrap():
        made = f"{missing}; a build makes {images.OFFLINE_BASE} with debootstrap"
        if os.geteuid() == 0:
            return Check(name, OK, made + " (about a minute)")
        return Check(name, WARN, made + ", which needs root", "run `sorctl images build` as root")
    fix = (
        f"apt-get install debootstrap (as root), `docker load` {images.DEFAULT_BASE}, or check "
        "a registry with --registry HOST:PORT (Docker Hub: registry-1.docker.io)"
    )
    if registry_ok is False:
        return Check(name, FAIL, f"{missing}, no debootstrap and the registry does not answer", fix)
    return Check(
        name, WARN, f"{missing} and no debootstrap: a build can only pull {images.DEFAULT_BASE} "
        "from the engine's registry", fix,
    )  # fmt: skip


def _is_local(client: docker.DockerClient) -> bool:
    base = client.api.base_url
    return base.startswith("http+docker://") and "ssh" not in base


def check_docker_disk(client: docker.DockerClient) -> Check:
    root = client.info().get("DockerRootDir", "")
    if not _is_local(client):
        return Check("disk (docker)", WARN, f"the engine at {client.api.base_url} is another "
                     f"machine: check the free space of its {root}")  # fmt: skip
    if not root or not Path(root).exists():
        return Check("disk (docker)", WARN, f"{root or 'the data directory'}: not visible here "
                     "(the engine runs in a VM or another namespace)")  # fmt: skip
    return machine.check_free("disk (docker)", Path(root), machine.BUILD_DOCKER_BYTES)


def check_host(spec: HostSpec, remote: docker.DockerClient) -> Check:
    """The host's engine answers; which of a host's images (ship.HOST_ROLES) it lacks; whether
    dispy's ports are free there (as `sorctl up --host` checks them, when it has the node
    image); plain TCP is a warning."""
    remote.api.timeout = WORK_TIMEOUT_S
    try:
        return _host_check(spec, remote)
    except (requests.RequestException, docker.errors.DockerException) as exc:  # after connecting
        return Check(f"host {spec.label}", FAIL, why(exc), _host_fix(spec))


def _host_fix(spec: HostSpec) -> str:
    url = urlsplit(spec.endpoint)
    ssh = f"{url.username + '@' if url.username else ''}{url.hostname}"
    if url.port:
        ssh = f"-p {url.port} {ssh}"
    return HOST_FIXES[spec.kind].format(endpoint=spec.endpoint, ssh=ssh)


def _host_check(spec: HostSpec, remote: docker.DockerClient) -> Check:
    info = remote.info()
    parts = [f"Docker {info.get('ServerVersion', '?')}, cgroup v{info.get('CgroupVersion', '?')}"]
    status, fixes = OK, []
    refs = [images.image_ref(r) for r in ship.HOST_ROLES]
    lacking = [refs[i] for i, r in enumerate(ship.HOST_ROLES) if images.image_problem(remote, r)]
    if not lacking:
        here = try_connect()  # one client per thread: this runs on on_each's pool
        if here is not None:
            try:
                lacking = [f"{ref} (other inputs than here)" for ref in
                           ship.missing(here, remote, ship.HOST_ROLES)]  # fmt: skip
            finally:
                here.close()
    if lacking:
        status = WARN
        parts.append(f"lacks {', '.join(lacking)} (`sorctl up --host` sends them)")
        fixes.append(f"sorctl images push --host {spec.endpoint}")
    else:
        parts.append(f"images of sorctl {images.sorctl_version()} there")
    if images.has_image(remote, images.image_ref("node")):
        _, taken = multihost.probe(spec, remote, "127.0.0.1")
        if taken:
            status = FAIL
            parts.append(f"dispy port(s) {', '.join(map(str, taken))} taken there")
            fixes.append("free them on the host (`ss -lntup` there names what holds them)")
        else:
            parts.append("dispy ports free")
    if spec.kind == "tcp":
        status = FAIL if status == FAIL else WARN
        parts.append("plain TCP: anyone who reaches the port runs the engine")
        fixes.append("use TLS (tcp://HOST:2376, --tlscacert/--tlscert/--tlskey) or ssh://")
    return Check(f"host {spec.label}", status, "; ".join(parts), "; ".join(fixes))


def check_hosts(specs: list[HostSpec], tls: TLSFiles | None) -> list[Check]:
    out = []
    for outcome in on_each(specs, tls, check_host, timeout=HOST_TIMEOUT_S):
        spec = outcome.host
        if outcome.value is not None:
            out.append(outcome.value)
            continue
        cause = (outcome.error or "").removeprefix(f"host {spec.label}: ")
        out.append(Check(f"host {spec.label}", FAIL, cause, _host_fix(spec)))
    return out


def run(
    specs: list[HostSpec],
    tls: TLSFiles | None,
    *,
    registry_address: str | None = None,
    insecure_registry: bool = False,
) -> list[Check]:
    """Every check, in the order printed: engine, images, registry, base, disk, ports, config,
    hosts."""
    if registry_address is not None:
        registry.check_address(registry_address)  # a bad address is bad input, before any check
    try:
        client: docker.DockerClient | None = connect()
        reason = ""
    except EngineError as exc:
        client, reason = None, str(exc)
    checks = [check_engine(client, reason)]
    try:
        if client is not None:
            checks += check_images(client)
        registry_ok = None
        if registry_address is not None:
            checks.append(check_registry(registry_address, insecure_registry))
            registry_ok = checks[-1].status == OK
        checks.append(check_base(client, registry_ok))
        if client is not None:
            checks.append(check_docker_disk(client))
    finally:
        if client is not None:
            client.close()
    checks.append(
        machine.check_free("disk (cache)", images.wheel_dir().parent, machine.BUILD_CACHE_BYTES)
    )
    checks += machine.check_ports()
    checks.append(machine.check_config_dir())
    checks += check_hosts(specs, tls)
    return checks
