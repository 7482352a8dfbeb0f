"""`sorctl doctor` against the real engine, and `--host` against a simulated lab host (tests/lab,
one host) and against an endpoint that does not answer.

The only host networking is inside the lab host (its engine's containers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from sorctl.engine.images import ROLES, image_ref, require_images, sorctl_version
from sorctl.errors import ImageError
from tests import lab as simlab

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def images_here(docker_client):
    try:
        require_images(docker_client, ROLES)
    except ImageError as exc:
        pytest.skip(f"images missing: {exc} (run `sorctl images build`)")
    return docker_client


@pytest.fixture(scope="module")
def lab(images_here):
    yield from simlab.fixture_lab("doctor-lab", hosts=(("h1", "a"),))


def doctor(tmp_path, *args: str, env: dict[str, str] | None = None):
    env = {**os.environ, "SORCTL_HOME": str(tmp_path / "home"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "sorctl.cli.main", "doctor", *args],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip


def marked(stdout: str) -> dict[str, str]:
    """Check name -> its mark, from the printed lines (fix lines and the summary left out)."""
    out = {}
    for line in stdout.splitlines():
        if line[:2] in ("✓ ", "! ", "✗ "):
            name, _, _ = line[2:].partition(": ")
            out[name] = line[0]
    return out


def test_this_machine_passes_and_json_says_the_same(images_here, tmp_path):
    r = doctor(tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stdout + r.stderr
    marks = marked(r.stdout)
    version = images_here.version()["Version"]
    engine_line = next(line for line in r.stdout.splitlines() if line.startswith("✓ engine: "))
    assert f"Docker {version}" in engine_line and "cgroup v" in engine_line, r.stdout
    for role in ROLES:
        assert marks[f"image {image_ref(role)}"] == "✓", r.stdout
    assert marks["base"] == "✓" and marks["config"] == "✓", r.stdout
    assert {"disk (docker)", "disk (cache)", "port 9700", "port 9701", "port 9702"} <= set(marks)

    j = doctor(tmp_path, "--json")
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc["ok"] is True and doc["sorctl"] == sorctl_version()
    symbol = {"ok": "✓", "warn": "!", "fail": "✗"}
    assert {c["name"]: symbol[c["status"]] for c in doc["checks"]} == marks


def test_a_lab_host_answers_and_says_what_it_lacks_then_which_port_is_taken(lab, tmp_path):
    h1 = lab.hosts[0]
    certs = {"DOCKER_CERT_PATH": str(lab.dir)}
    remote = lab.client(h1)
    version = remote.version()["Version"]
    r = doctor(tmp_path, "--host", h1.tcp, "--json", env=certs)
    host = {c["name"]: c for c in json.loads(r.stdout)["checks"]}[f"host {h1.tcp}"]
    # a fresh host: it answers, lacks the images (a warning: `up --host` sends them)
    assert host["status"] == "warn" and f"Docker {version}" in host["detail"], host
    assert image_ref("node") in host["detail"] and host["fix"] == (
        f"sorctl images push --host {h1.tcp}"
    )
    assert r.returncode == 0, r.stdout + r.stderr

    pushed = subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", "images", "push", "--host", h1.tcp],
        capture_output=True, text=True, timeout=600, env={**os.environ, **certs},
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    # over ssh this time: the images are there and dispy's ports are free
    r = doctor(tmp_path, "--host", h1.ssh, env={"HOME": str(lab.ssh_home)})
    line = next((x for x in r.stdout.splitlines() if x.startswith(f"✓ host {h1.ssh}: ")), r.stdout)
    assert "images of sorctl" in line and "dispy ports free" in line, r.stdout
    assert r.returncode == 0, r.stdout + r.stderr

    squatter = remote.containers.run(
        image_ref("node"), network_mode="host", detach=True, name="doctor-squatter",
        entrypoint=["python3", "-u", "-c", "import socket,time; s=socket.socket(); "
                    "s.bind(('0.0.0.0', 9701)); s.listen(); print('bound'); time.sleep(600)"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while b"bound" not in squatter.logs() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert b"bound" in squatter.logs(), squatter.logs()
        r = doctor(tmp_path, "--host", h1.tcp, env=certs)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        i = next(i for i, x in enumerate(lines) if x.startswith(f"✗ host {h1.tcp}: "))
        assert "dispy port(s) 9701 taken" in lines[i], r.stdout
        assert lines[i + 1].startswith("    fix: free them on the host"), r.stdout
    finally:
        squatter.remove(force=True)


def test_a_host_that_does_not_answer_is_one_failed_line_with_its_fix(lab, tmp_path):
    h1 = lab.hosts[0]
    dead = h1.tcp.replace(h1.address, h1.address.rsplit(".", 1)[0] + ".99")
    r = doctor(tmp_path, "--host", dead, env={"DOCKER_CERT_PATH": str(lab.dir)})
    assert r.returncode == 1 and r.stderr == "", r.stdout + r.stderr
    failed = [x for x in r.stdout.splitlines() if x.startswith("✗ ")]
    assert len(failed) == 1 and failed[0].startswith(f"✗ host {dead}: "), r.stdout
    lines = r.stdout.splitlines()
    fix = lines[lines.index(failed[0]) + 1]
    assert (
        fix == f"    fix: check that `docker -H {dead} --tlsverify version` works from here "
        "(--tlscacert/--tlscert/--tlskey or DOCKER_CERT_PATH)"
    ), r.stdout
