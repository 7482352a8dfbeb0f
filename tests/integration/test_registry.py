"""Images through a real container registry (Debian's docker-registry, in the simulated lab:
tests/lab/registry.py): pushed from this machine's engine, pulled by each lab host's engine
(no save/load), the base of a build taken from it, and the engines' refusals as one line.

This machine's engine pushes through the registry's port on 127.0.0.1 (plain HTTP to loopback
is allowed by every engine's defaults); the lab's engines pull at its lab address, listed under
their insecure-registries. Its address on the other subnet is listed by none of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import docker
import pytest

from sorctl.engine import images
from sorctl.engine import registry as registries
from sorctl.engine.images import image_ref
from sorctl.names import LABEL_INPUTS_HASH
from tests import lab as simlab
from tests.lab import registry as labreg

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def lab():
    yield from simlab.fixture_lab("reg-lab")


@pytest.fixture(scope="module")
def reg(lab):
    r = labreg.start(lab)
    labreg.trust_plain_http(lab, lab.hosts, r.addresses[lab.hosts[0].subnet])
    return r


def sorctl(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


def lab_env(lab, home) -> dict[str, str]:
    return {"HOME": str(lab.ssh_home), "DOCKER_CERT_PATH": str(lab.dir), "SORCTL_HOME": str(home)}


def endpoint(lab, h) -> str:
    """The scheduler's subnet over tcp:// with TLS, the other over ssh://."""
    return h.tcp if h.subnet == lab.hosts[0].subnet else h.ssh


def labelled_everywhere(lab, name: str) -> list[str]:
    f = {"label": f"org.sorctl.cluster={name}"}
    return [c.name for h in lab.hosts for c in lab.client(h).containers.list(all=True, filters=f)]


def assert_failed_in_one_line_and_left_nothing(r, lab, home, name, registry) -> str:
    """The error line (above the doctor hint, which names the registry too); nothing left."""
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    *_, error, hint = r.stderr.strip().splitlines()
    assert error.startswith("sorctl: error: host "), r.stderr
    assert hint.startswith("run `sorctl doctor --host") and f"--registry {registry}" in hint
    assert labelled_everywhere(lab, name) == []
    assert not (home / "clusters" / name).exists()
    return error


def test_up_on_three_hosts_pulls_from_the_registry_solves_and_down_cleans(lab, reg, tmp_path):
    import numpy as np
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from sorctl.solver import io as sio
    from tests.systems import anisotropic2d

    for h in lab.hosts:
        labreg.forget_images(lab, h)
    env, name = lab_env(lab, tmp_path), "reg-x"
    push = sorctl("images", "push", "--registry", reg.loopback, env=env)
    assert push.returncode == 0, push.stderr
    assert f"registry {reg.loopback}: plain HTTP" in push.stderr
    for role in ("scheduler", "node", "relay", "client"):
        assert f"{reg.loopback}/{image_ref(role)}" in push.stdout
    pulled_from = reg.addresses[lab.hosts[0].subnet]
    hosts = [a for h in lab.hosts for a in ("--host", endpoint(lab, h))]
    up = sorctl("up", "--name", name, *hosts, "--registry", pulled_from, env=env)
    try:
        assert up.returncode == 0, up.stderr
        for h in lab.hosts:  # each host pulled; nothing went by save/load
            assert f"images pulled by {endpoint(lab, h)}: " in up.stderr, up.stderr
        assert "images sent to" not in up.stderr
        here = docker.from_env()
        want = here.images.get(image_ref("node")).labels[LABEL_INPUTS_HASH]
        for h in lab.hosts:
            client = lab.client(h)
            assert client.images.get(image_ref("node")).labels[LABEL_INPUTS_HASH] == want
            tags = [t for i in client.images.list() for t in i.tags]
            assert not [t for t in tags if t.startswith(pulled_from)], tags  # renamed, none kept
        A = anisotropic2d(40)
        b = np.random.default_rng(3).standard_normal(A.shape[0])
        sio.save_system(tmp_path / "sys.npz", A, b, None)
        solve = sorctl("solve", str(tmp_path / "sys.npz"), "--cluster", name, "--rtol", "1e-8",
                       "-o", str(tmp_path / "x.npz"), "--json", env=env)  # fmt: skip
        assert solve.returncode == 0, solve.stderr
        report = json.loads(solve.stdout)
        assert report["converged"] and report["nodes"] == 3, report
        x = np.load(tmp_path / "x.npz")["x"]
        assert np.linalg.norm(b - A @ x) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-6)
        want_x = spla.spsolve(sp.csc_matrix(A), b)
        assert np.abs(x - want_x).max() <= 1e4 * 1e-8 * np.abs(want_x).max()
    finally:
        down = sorctl("down", "--name", name, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert labelled_everywhere(lab, name) == []


def test_an_engine_that_refuses_plain_http_is_one_line_with_the_fix(lab, reg, tmp_path):
    h2 = lab.host("h2")
    labreg.forget_images(lab, h2)  # so that it has to pull
    unlisted = next(a for k, a in reg.addresses.items() if k != h2.subnet)
    env, name = lab_env(lab, tmp_path), "reg-r"
    r = sorctl("up", "--name", name, "--host", h2.tcp, "--registry", unlisted, env=env)
    last = assert_failed_in_one_line_and_left_nothing(r, lab, tmp_path, name, unlisted)
    assert h2.tcp in last and f"the registry {unlisted} speaks plain HTTP" in last, last
    assert f'"insecure-registries": ["{unlisted}"]' in last and "daemon.json" in last, last


def test_a_registry_that_does_not_answer_is_one_line_and_nothing_is_left(lab, reg, tmp_path):
    h1, h2 = lab.host("h1"), lab.host("h2")
    for h in (h1, h2):
        labreg.forget_images(lab, h)
    silent = f"{h1.address.rsplit('.', 1)[0]}.99:5000"  # nothing has that address
    env, name = lab_env(lab, tmp_path), "reg-n"
    r = sorctl("up", "--name", name, "--host", h1.tcp, "--host", h2.tcp, "--registry", silent,
               env=env)  # fmt: skip
    last = assert_failed_in_one_line_and_left_nothing(r, lab, tmp_path, name, silent)
    assert f"cannot reach the registry {silent}" in last and (h1.tcp in last or h2.tcp in last)


def test_a_build_takes_its_base_from_the_registry_when_it_has_one(reg):
    """images.build's choice of base, not a build: what the registry has, else today's way."""
    here = docker.from_env()
    said: list[str] = []
    without = images.choose_base(here, lambda line: None)
    assert registries.choose_base(here, reg.loopback, said.append) == without
    assert any("has neither" in line for line in said), said
    # sorctl-base:bookworm (or python:3.11-slim where the engine has it) pushed there
    repo = f"{reg.loopback}/{without.split(':')[0]}"
    here.api.tag(without, repo, without.split(":")[1])
    try:
        for line in here.api.push(repo, tag=without.split(":")[1], stream=True, decode=True):
            assert "error" not in line, line
    finally:
        here.api.remove_image(f"{reg.loopback}/{without}", noprune=True)
    said.clear()
    try:
        base = registries.choose_base(here, reg.loopback, said.append)
        assert base == f"{reg.loopback}/{without}", said
        assert here.images.get(base).id == here.images.get(without).id  # the same image
        assert said[-1] == f"base: {base} (pulled from the registry)", said
    finally:
        here.api.remove_image(f"{reg.loopback}/{without}", noprune=True)


def test_over_tls_a_host_that_trusts_the_ca_pulls_and_one_that_does_not_is_told_how(
    lab, reg, tmp_path
):
    h2, h3 = lab.host("h2"), lab.host("h3")
    env = lab_env(lab, tmp_path)
    push = sorctl("images", "push", "--registry", reg.loopback, env=env)  # both share storage
    assert push.returncode == 0, push.stderr
    tls = reg.tls_addresses[h3.subnet]
    labreg.trust_tls([h3], tls, reg.ca_pem)
    labreg.forget_images(lab, h3)
    up = sorctl("up", "--name", "reg-t", "--host", h3.ssh, "--registry", tls, env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert f"registry {tls}: TLS, its certificate not checked here" in up.stderr, up.stderr
        assert f"images pulled by {h3.ssh}: " in up.stderr, up.stderr
    finally:
        assert sorctl("down", "--name", "reg-t", env=env, timeout=120).returncode == 0
    untrusted = reg.tls_addresses[h2.subnet]  # h2 has no CA for it
    labreg.forget_images(lab, h2)
    r = sorctl("up", "--name", "reg-u", "--host", h2.tcp, "--registry", untrusted, env=env)
    last = assert_failed_in_one_line_and_left_nothing(r, lab, tmp_path, "reg-u", untrusted)
    assert h2.tcp in last and f"/etc/docker/certs.d/{untrusted}/ca.crt" in last, last
