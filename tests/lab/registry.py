"""A container registry inside the simulated lab: Debian's `docker-registry` (the CNCF
distribution registry), its binary taken from the .deb (`apt-get download`, no install on this
machine) and run in a container of the lab's host image, on both lab subnets (.5 on each). Two
registry processes share one storage: plain HTTP on 5000 and TLS on 5443 (a certificate of
its own CA, which `trust_tls` hands to a lab engine the way Docker documents: certs.d).

This machine's engine reaches it through a port published on 127.0.0.1 only: an engine takes
127.0.0.0/8 registries as plain HTTP by default, so this machine's engine needs no change. The
lab's engines pull at its lab addresses; `trust_plain_http` lists one of them under their
insecure-registries (daemon.json, reloaded with SIGHUP), the other stays unlisted, so that an
engine's refusal of plain HTTP can be seen for real.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker

from sorctl.engine import registry as registries
from tests import lab as simlab

PORT = 5000
TLS_PORT = 5443
OCTET = 5
STORAGE = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/registry
"""
PLAIN = STORAGE + "http:\n  addr: :5000\n"
TLS = STORAGE + (
    "http:\n  addr: :5443\n  tls:\n    certificate: /etc/docker/registry/cert.pem\n"
    "    key: /etc/docker/registry/key.pem\n"
)
ENTRY = b"""#!/bin/sh
/usr/bin/docker-registry serve /etc/docker/registry/plain.yml &
exec /usr/bin/docker-registry serve /etc/docker/registry/tls.yml
"""


@dataclass
class Registry:
    container: str
    loopback: str  # 127.0.0.1:PORT: how this machine's engine pushes to it
    addresses: dict[str, str]  # subnet key -> HOST:PORT on that lab subnet, plain HTTP
    tls_addresses: dict[str, str]  # the same with TLS
    ca_pem: bytes  # the CA of its TLS certificate


def binary(cache: Path | None = None) -> Path:
    """/usr/bin/docker-registry out of Debian's package, downloaded once into the cache."""
    cache = cache or Path.home() / ".cache" / "sorctl-lab" / "docker-registry"
    path = cache / "usr" / "bin" / "docker-registry"
    if path.is_file():
        return path
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", "docker-registry"], cwd=tmp, check=True,
                       capture_output=True)  # fmt: skip
        deb = next(Path(tmp).glob("docker-registry_*.deb"))
        unpacked = Path(tmp, "x")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(unpacked / "usr" / "bin" / "docker-registry", path)
    return path


def start(lab: simlab.Lab) -> Registry:
    """The registry container, labelled for the lab (its `down` removes it); waits until it
    answers on every address."""
    outer = docker.from_env()
    api = outer.api
    name = f"{lab.name}-registry"
    keys = sorted(lab.subnets)
    addrs = {k: str(ipaddress.ip_network(lab.subnets[k]).network_address + OCTET) for k in keys}
    host_config = api.create_host_config(port_bindings={f"{PORT}/tcp": ("127.0.0.1", None)})
    net_config = api.create_networking_config(
        {f"{lab.name}-{keys[0]}": api.create_endpoint_config(ipv4_address=addrs[keys[0]])}
    )
    api.create_container(
        simlab.image_tag(), name=name, hostname="registry", labels={simlab.LABEL: lab.name},
        entrypoint=["/bin/sh", "/etc/docker/registry/entry.sh"],
        ports=[PORT], host_config=host_config, networking_config=net_config, detach=True,
    )  # fmt: skip
    for k in keys[1:]:
        api.connect_container_to_network(name, f"{lab.name}-{k}", ipv4_address=addrs[k])
    ca = simlab._CA(f"{lab.name} registry")
    key, cert = ca.issue("registry", ips=list(addrs.values()), server=True)
    files = {
        "/usr/bin/docker-registry": (binary().read_bytes(), 0o755),
        "/etc/docker/registry/entry.sh": (ENTRY, 0o755),
        "/etc/docker/registry/plain.yml": (PLAIN.encode(), 0o644),
        "/etc/docker/registry/tls.yml": (TLS.encode(), 0o644),
        "/etc/docker/registry/cert.pem": (simlab._pem_cert(cert), 0o644),
        "/etc/docker/registry/key.pem": (simlab._pem_key(key), 0o600),
    }
    api.put_archive(name, "/", simlab._tar(files))
    api.start(name)
    port = api.port(name, PORT)[0]["HostPort"]
    reg = Registry(
        name, f"127.0.0.1:{port}", {k: f"{a}:{PORT}" for k, a in addrs.items()},
        {k: f"{a}:{TLS_PORT}" for k, a in addrs.items()}, simlab._pem_cert(ca.cert),
    )  # fmt: skip
    for address in [reg.loopback, *reg.addresses.values()]:
        simlab._wait(
            f"registry at {address}",
            lambda a=address: registries.answers(a, insecure=True) is None,
            30,
        )
    for address in reg.tls_addresses.values():  # answers TLS (its CA is not this machine's)
        simlab._wait(
            f"registry at {address}",
            lambda a=address: "certificate" in (registries.answers(a) or ""),
            30,
        )
    return reg


def trust_plain_http(lab: simlab.Lab, hosts: list[simlab.Host], address: str) -> None:
    """Each host's engine lists `address` under insecure-registries (reloaded, not restarted)."""
    outer = docker.from_env()
    conf = json.dumps({"insecure-registries": [address]})
    for host in hosts:
        c = outer.containers.get(host.container)
        code, out = c.exec_run(
            [
                "sh",
                "-c",
                f"mkdir -p /etc/docker && echo '{conf}' > /etc/docker/daemon.json "
                "&& kill -HUP $(pidof dockerd)",
            ]  # fmt: skip
        )
        if code != 0:
            raise RuntimeError(f"lab: {host.name}: cannot reload dockerd: {out!r}")

    def listed(host: simlab.Host) -> bool:
        configs = lab.client(host).info()["RegistryConfig"]["IndexConfigs"]
        return address in configs and not configs[address]["Secure"]

    for host in hosts:
        simlab._wait(f"{host.name} lists {address} as insecure", lambda h=host: listed(h), 30)


def trust_tls(hosts: list[simlab.Host], address: str, ca_pem: bytes) -> None:
    """Each host's engine trusts the registry's CA for `address` (certs.d: read at each pull)."""
    outer = docker.from_env()
    for host in hosts:
        c = outer.containers.get(host.container)
        c.put_archive("/", simlab._tar({f"/etc/docker/certs.d/{address}/ca.crt": (ca_pem, 0o644)}))


def forget_images(lab: simlab.Lab, host: simlab.Host) -> None:
    """The sorctl images off a lab host's engine, so that the next `up` has to bring them."""
    client = lab.client(host)
    for image in client.images.list():
        for tag in image.tags:
            if tag.split("/")[-1].startswith("sorctl-"):
                client.images.remove(tag, force=True)
