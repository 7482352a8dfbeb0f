"""Other machines' Docker engines (`--host`), in the simulated lab (tests/lab): three engines in
containers on two subnets, each reached over tcp:// with TLS and over ssh://.

Nothing here uses the machine's own network namespace for dispy; the inner engines are the
only place with host networking.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sorctl.cluster.hosts import parse_host
from sorctl.engine.connect import TLSFiles, connect_host
from sorctl.errors import EngineError
from tests import lab as simlab

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def lab():
    yield from simlab.fixture_lab()


def sorctl(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_every_host_answers_over_tls_and_over_ssh(lab, monkeypatch):
    for host in lab.hosts:
        assert connect_host(parse_host(host.tcp), lab.tls).info()["Name"] == host.name
    # paramiko reads ~/.ssh/config and ~/.ssh/known_hosts: the lab's, through HOME
    monkeypatch.setenv("HOME", str(lab.ssh_home))
    for host in lab.hosts:
        assert connect_host(parse_host(host.ssh)).info()["Name"] == host.name


def test_a_wrong_tls_certificate_is_a_one_line_error(lab, tmp_path):
    other = tmp_path / "other"
    simlab.make_ca_files(other, "other")  # a CA that signed nothing of the lab's
    with pytest.raises(EngineError, match="TLS verification failed"):
        connect_host(parse_host(lab.hosts[0].tcp), TLSFiles.resolve(other / "ca.pem",
                     other / "cert.pem", other / "key.pem"))  # fmt: skip
    r = sorctl("images", "push", "--host", lab.hosts[0].tcp, "--role", "relay",
               env={"DOCKER_CERT_PATH": str(other)})  # fmt: skip
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "TLS verification failed" in lines[0], r.stderr
    assert lab.hosts[0].tcp in lines[0]


def test_images_are_shipped_once_and_an_unreachable_host_is_named(lab):
    h2, h3 = lab.host("h2"), lab.host("h3")
    ssh = {"HOME": str(lab.ssh_home), "DOCKER_CERT_PATH": str(lab.dir)}
    dead = h2.tcp.replace(h2.address, h2.address.rsplit(".", 1)[0] + ".99")
    r = sorctl("images", "push", "--host", h2.tcp, "--host", h3.ssh, "--host", dead, env=ssh)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].count("host ") == 1 and dead in r.stderr
    # the reachable hosts got every role's image, with the same inputs as here
    for host in (h2, h3):
        tags = {t for i in lab.client(host).images.list() for t in i.tags}
        assert {f"sorctl-{r}:" for r in ("scheduler", "node", "relay", "client")} <= {
            t.split(":")[0] + ":" for t in tags
        }, tags
    again = sorctl("images", "push", "--host", h2.tcp, "--host", h3.ssh, env=ssh)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("up to date") == 2, again.stdout
