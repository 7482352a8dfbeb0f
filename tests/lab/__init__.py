"""A simulated lab of Docker hosts on this machine: Docker engines in containers of the outer
engine, on two LAN subnets joined by a router container.

Each host listens on 2376 (dockerd with TLS, client certificates checked) and on 22 (sshd,
key only), so both of sorctl's ways in, tcp:// with TLS and ssh://, are exercised for real.
`docker run --network host` inside such a host gives its container the host's lab address:
the only place where host networking is used. Everything carries the label org.sorctl.lab=NAME,
so `down` finds it all again, even after an interrupted `up`.

`--privileged` is refused on some engines (the engine's bounding set lacks CAP_SYS_RESOURCE);
all capabilities but that one, no seccomp/apparmor profile, unmasked /proc and /sys and
/dev/fuse are enough, with the entry script remounting cgroup v1 controllers read-write.

    python -m tests.lab up [--name N] | down [--name N] | image      (scripts/lab.sh wraps it)
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import shutil
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sorctl.cluster.hosts import parse_host
from sorctl.engine.connect import TLSFiles, connect_host

HERE = Path(__file__).resolve().parent
LABEL = "org.sorctl.lab"
DEFAULT_NAME = "mh-lab"
# Host name -> subnet key. Two hosts share the first subnet (the scheduler's), one is behind
# the router.
DEFAULT_HOSTS = (("h1", "a"), ("h2", "a"), ("h3", "b"))
ROUTER_OCTET = 254
TLS_PORT = 2376
SSH_PORT = 22


def image_tag() -> str:
    digest = hashlib.sha256((HERE / "make-host.sh").read_bytes()).hexdigest()[:12]
    return f"sorctl-labhost:{digest}"


def ensure_image(client: docker.DockerClient) -> str:
    """The host image, made with debootstrap when missing (about two minutes)."""
    tag = image_tag()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        from sorctl.engine.images import apt_mirror

        subprocess.run([str(HERE / "make-host.sh"), tag, apt_mirror()], check=True)
    return tag


@dataclass
class Host:
    name: str  # h1, h2, ...
    container: str  # <lab>-h1
    address: str
    subnet: str  # its subnet key

    @property
    def tcp(self) -> str:
        return f"tcp://{self.address}:{TLS_PORT}"

    @property
    def ssh(self) -> str:
        return f"ssh://root@{self.address}"


@dataclass
class Lab:
    name: str
    dir: Path  # ca.pem, cert.pem, key.pem (the client's TLS files), home/.ssh (ssh client)
    subnets: dict[str, str]  # key -> CIDR
    hosts: list[Host] = field(default_factory=list)

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    @property
    def ssh_home(self) -> Path:
        """A HOME whose .ssh/config and known_hosts reach the lab's hosts (paramiko reads both)."""
        return self.dir / "home"

    @property
    def tls(self) -> TLSFiles:
        return TLSFiles(self.dir / "ca.pem", self.dir / "cert.pem", self.dir / "key.pem")

    def client(self, host: Host) -> docker.DockerClient:
        """The host's engine over tcp:// with TLS, through sorctl's own connect."""
        return connect_host(parse_host(host.tcp), self.tls)


def _subnets(name: str, keys: list[str]) -> dict[str, str]:
    """Free /24s in 10.219.0.0/16, chosen from the lab's name (stable across up and down)."""
    used = []
    for net in docker.from_env().networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet"):
                used.append(ipaddress.ip_network(cfg["Subnet"]))
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 200
    out: dict[str, str] = {}
    for k in range(250):
        net = ipaddress.ip_network(f"10.219.{(start + k) % 250 + 1}.0/24")
        if not any(net.overlaps(u) for u in used):
            out[keys[len(out)]] = str(net)
            used.append(net)
            if len(out) == len(keys):
                return out
    raise RuntimeError("no free /24 in 10.219.0.0/16 for the lab")


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = sorted({str(Path(p).parent) for p in files})
        for d in dirs:
            parts = Path(d).parts
            for i in range(1, len(parts) + 1):
                sub = str(Path(*parts[:i]))
                if sub in ("/", "."):
                    continue
                info = tarfile.TarInfo(sub.lstrip("/"))
                info.type = tarfile.DIRTYPE
                info.mode = 0o700 if sub.endswith(".ssh") else 0o755
                tar.addfile(info)
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip


def _cert(subject: str, issuer_key, issuer_name, *, ca=False, ips=(), server=False, client=False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ips:
        sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


class _CA:
    def __init__(self, name: str):
        self.key, self.cert = _cert(f"{name} lab CA", None, None, ca=True)

    def issue(self, subject: str, **kw):
        return _cert(subject, self.key, self.cert.subject, **kw)


def make_ca_files(directory: Path, name: str) -> _CA:
    """A CA and a client certificate in the Docker CLI's layout (ca.pem, cert.pem, key.pem)."""
    ca = _CA(name)
    key, cert = ca.issue("lab client", client=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(_pem_cert(ca.cert))
    (directory / "cert.pem").write_bytes(_pem_cert(cert))
    (directory / "key.pem").write_bytes(_pem_key(key))
    os.chmod(directory / "key.pem", 0o600)
    return ca


def _labels(lab: str) -> dict[str, str]:
    return {LABEL: lab}


def _wait(what: str, check, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not up yet: keep asking until the deadline
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"lab: {what} not ready after {deadline_s:.0f} s ({last})")


def _ssh_banner(address: str) -> bool:
    with socket.create_connection((address, SSH_PORT), timeout=2) as s:
        return s.recv(64).startswith(b"SSH-")


def up(name: str = DEFAULT_NAME, hosts=DEFAULT_HOSTS, directory: Path | None = None) -> Lab:
    """Creates the lab (image made if missing) and waits until every host answers on TLS and SSH."""
    outer = docker.from_env()
    tag = ensure_image(outer)
    keys = sorted({k for _, k in hosts})
    lab = Lab(name, directory or Path.home() / ".cache" / "sorctl-lab" / name, _subnets(name, keys))
    try:
        _create(outer, tag, lab, hosts)
        for h in lab.hosts:
            _wait(f"{h.name} TLS engine", lambda h=h: lab.client(h).ping(), 90)
            _wait(f"{h.name} sshd", lambda h=h: _ssh_banner(h.address), 30)
    except BaseException:
        down(name)
        raise
    return lab


def _create(outer: docker.DockerClient, tag: str, lab: Lab, hosts) -> None:
    api = outer.api
    entry = (HERE / "host-entry.sh").read_bytes()
    nets = {}
    for key, cidr in lab.subnets.items():
        gw = str(ipaddress.ip_network(cidr).network_address + 1)
        ipam = docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=cidr, gateway=gw)]
        )
        nets[key] = outer.networks.create(
            f"{lab.name}-{key}", driver="bridge", ipam=ipam, labels=_labels(lab.name),
            options={"com.docker.network.driver.mtu": "1500"},
        )  # fmt: skip

    def addr(key: str, octet: int) -> str:
        return str(ipaddress.ip_network(lab.subnets[key]).network_address + octet)

    ca = make_ca_files(lab.dir, lab.name)
    ssh_key = ed25519.Ed25519PrivateKey.generate()
    host_key = ed25519.Ed25519PrivateKey.generate()
    openssh = serialization.PrivateFormat.OpenSSH
    none = serialization.NoEncryption()
    pub = ssh_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    host_pub = host_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    sshdir = lab.ssh_home / ".ssh"
    sshdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = serialization.Encoding.PEM
    (sshdir / "id_ed25519").write_bytes(ssh_key.private_bytes(pem, openssh, none))
    os.chmod(sshdir / "id_ed25519", 0o600)

    # The router: on every subnet at .254, forwarding on.
    router = f"{lab.name}-router"
    first, *rest = keys = sorted(lab.subnets)
    _create_container(
        api, tag, router, nets[first].name, addr(first, ROUTER_OCTET), lab,
        env={"LAB_ROLE": "router"}, files={"/usr/local/bin/lab-host": (entry, 0o755)},
        host_extra={"sysctls": {"net.ipv4.ip_forward": "1"}, "cap_add": ["NET_ADMIN"]},
    )  # fmt: skip
    for key in rest:
        api.connect_container_to_network(
            router, nets[key].name, ipv4_address=addr(key, ROUTER_OCTET)
        )
    api.start(router)

    known = []
    for i, (hname, key) in enumerate(hosts):
        address = addr(key, 11 + i)
        host = Host(hname, f"{lab.name}-{hname}", address, key)
        others = [f"{lab.subnets[k]} via {addr(key, ROUTER_OCTET)}" for k in keys if k != key]
        skey, scert = ca.issue(hname, ips=[address], server=True)
        files = {
            "/usr/local/bin/lab-host": (entry, 0o755),
            "/etc/lab/tls/ca.pem": (_pem_cert(ca.cert), 0o644),
            "/etc/lab/tls/cert.pem": (_pem_cert(scert), 0o644),
            "/etc/lab/tls/key.pem": (_pem_key(skey), 0o600),
            "/root/.ssh/authorized_keys": (pub + b"\n", 0o600),
            "/etc/ssh/ssh_host_ed25519_key": (host_key.private_bytes(pem, openssh, none), 0o600),
        }  # fmt: skip
        volume = outer.volumes.create(f"{host.container}-docker", labels=_labels(lab.name))
        _create_container(
            api, tag, host.container, nets[key].name, address, lab, hostname=hname,
            env={"LAB_ROLE": "host", "LAB_ROUTES": ",".join(others),
                 "LAB_CGROUP": f"{host.container}"},
            files=files,
            host_extra={
                "cap_add": ["ALL"], "cap_drop": ["SYS_RESOURCE"],
                "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
                "devices": ["/dev/fuse:/dev/fuse:rwm"],
                "binds": {volume.name: {"bind": "/var/lib/docker", "mode": "rw"}},
            },
            unmask=True,
        )  # fmt: skip
        api.start(host.container)
        lab.hosts.append(host)
        known.append(f"{address} {host_pub.decode()}")
    (sshdir / "known_hosts").write_text("\n".join(known) + "\n")
    patterns = " ".join(h.address for h in lab.hosts)
    (sshdir / "config").write_text(
        f"Host {patterns}\n  User root\n  IdentityFile {sshdir / 'id_ed25519'}\n"
    )


def _create_container(api, tag, name, network, address, lab, *, env, files, host_extra,
                      hostname=None, unmask=False):  # fmt: skip
    host_config = api.create_host_config(**host_extra)
    if unmask:  # what `docker run --security-opt systempaths=unconfined` sends
        host_config["MaskedPaths"] = []
        host_config["ReadonlyPaths"] = []
    net_config = api.create_networking_config(
        {network: api.create_endpoint_config(ipv4_address=address)}
    )
    api.create_container(
        tag, name=name, hostname=hostname or name, environment=env, labels=_labels(lab.name),
        host_config=host_config, networking_config=net_config, detach=True,
    )  # fmt: skip
    api.put_archive(name, "/", _tar(files))


def down(name: str = DEFAULT_NAME) -> list[str]:
    """Removes everything labelled for the lab; returns what it removed."""
    outer = docker.from_env()
    f = {"label": f"{LABEL}={name}"}
    gone = []
    for c in outer.containers.list(all=True, filters=f):
        c.remove(force=True, v=True)
        gone.append(c.name)
    for n in outer.networks.list(filters=f):
        n.remove()
        gone.append(n.name)
    for v in outer.volumes.list(filters=f):
        v.remove(force=True)
        gone.append(v.name)
    return gone


def fixture_lab(prefix: str = "mh-lab", hosts=DEFAULT_HOSTS):
    """For a pytest fixture: a fresh lab named <prefix>-<random>, removed afterwards even when
    a test fails. Skips (fails under CI) when no engine answers or the image cannot be made."""
    import secrets

    import pytest

    name = f"{prefix}-{secrets.token_hex(2)}"
    try:
        docker.from_env().ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine: {exc}")
    try:
        lab = up(name, hosts, directory=Path(os.environ.get("TMPDIR", "/tmp")) / f"sorctl-{name}")
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        down(name)
        pytest.skip(f"the simulated lab did not start: {exc}")
    try:
        yield lab
    finally:
        down(name)
        shutil.rmtree(lab.dir, ignore_errors=True)
