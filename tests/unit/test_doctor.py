"""`sorctl doctor` without Docker: the lines and JSON it prints, its exit status, and the checks
of this machine (config directory permissions, a port bound here, free disk, a registry probe
against a server of the test's own on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sorctl.cli.doctor_cmd import HINT, document, hint, lines, summary
from sorctl.cluster import material
from sorctl.cluster.machine import (
    FAIL,
    OK,
    WARN,
    Check,
    check_config_dir,
    check_free,
    check_port,
    exit_status,
)
from sorctl.engine import registry
from sorctl.errors import InputError

CHECKS = [
    Check("engine", OK, "Docker 27.0"),
    Check("port 9701", WARN, "tcp in use", "free it"),
    Check("image sorctl-node:0.1.0", FAIL, "is missing", "sorctl images build"),
]


def test_a_passed_check_is_one_line_and_a_failed_one_says_its_fix():
    assert lines(CHECKS[0]) == ["✓ engine: Docker 27.0"]
    assert lines(CHECKS[1]) == ["! port 9701: tcp in use", "    fix: free it"]
    assert lines(CHECKS[2]) == [
        "✗ image sorctl-node:0.1.0: is missing",
        "    fix: sorctl images build",
    ]


def test_warnings_do_not_fail_and_a_failure_does():
    assert exit_status(CHECKS[:2]) == 0
    assert exit_status(CHECKS) == 1
    assert summary(CHECKS[:1]) == "all 1 checks passed"
    assert summary(CHECKS) == "1 failed, 1 warning(s), 1 passed"


def test_the_json_document_lists_every_check():
    doc = json.loads(json.dumps(document(CHECKS)))
    assert doc["ok"] is False and isinstance(doc["sorctl"], str)
    assert [c["name"] for c in doc["checks"]] == [c.name for c in CHECKS]
    assert {tuple(sorted(c)) for c in doc["checks"]} == {("detail", "fix", "name", "status")}
    assert [c["status"] for c in doc["checks"]] == ["ok", "warn", "fail"]
    assert document(CHECKS[:2])["ok"] is True


def test_the_hint_names_the_hosts_without_their_addresses():
    assert hint() == HINT == "run `sorctl doctor` to check this machine"
    assert hint(["ssh://me@a", "tcp://b:2376=10.0.0.2"]) == (
        "run `sorctl doctor --host ssh://me@a --host tcp://b:2376` to check this machine and "
        "the hosts"
    )


# ---- the config directory


def test_the_config_directory_as_sorctl_writes_it_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("SORCTL_HOME", str(tmp_path / "home"))
    assert check_config_dir().status == OK  # not made yet
    material.create("doc", tls=False)
    check = check_config_dir()
    assert check.status == OK and "1 cluster secret" in check.detail, check


@pytest.mark.parametrize(
    "path, mode",
    [("clusters/doc/secret", 0o644), ("clusters/doc", 0o750), ("clusters", 0o777)],
)
def test_a_secret_or_directory_others_can_reach_fails_with_the_chmod(
    tmp_path, monkeypatch, path, mode
):
    home = tmp_path / "home"
    monkeypatch.setenv("SORCTL_HOME", str(home))
    material.create("doc", tls=False)
    os.chmod(home / path, mode)
    check = check_config_dir()
    assert check.status == FAIL and path in check.detail, check
    assert check.fix == f"chmod -R go-rwx {home}"
    subprocess.run(check.fix.split(), check=True)  # the fix it names fixes it
    assert check_config_dir().status == OK


# ---- ports and disk


def test_a_port_bound_here_is_named_with_its_process():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        check = check_port(port, ("tcp",), "127.0.0.1")
        assert check.status == WARN and "tcp in use" in check.detail, check
        assert check.fix
        try:
            import psutil  # noqa: F401 -- optional: without it the holder is not named
        except ImportError:
            pass
        else:
            assert f"pid {os.getpid()}" in check.detail, check
    assert check_port(port, ("tcp",), "127.0.0.1").status == OK


def test_a_udp_port_bound_here_is_busy():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        check = check_port(port, ("tcp", "udp"), "127.0.0.1")
    assert check.status == WARN and "udp in use" in check.detail and "tcp" not in check.detail


def test_free_disk_below_what_a_build_needs_fails(tmp_path):
    assert check_free("disk", tmp_path / "not-yet", 1).status == OK
    low = check_free("disk", tmp_path, 1 << 62)
    assert low.status == FAIL and str(tmp_path) in low.detail and low.fix


# ---- the registry probe, against a server of the test's own on loopback


class _Registry(BaseHTTPRequestHandler):
    status, header = 200, True

    def do_GET(self):  # noqa: N802 -- http.server's name
        self.send_response(self.status)
        if self.header:
            self.send_header(registry.API_HEADER, "registry/2.0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_registry():
    def serve(status: int = 200, header: bool = True) -> str:
        handler = type("H", (_Registry,), {"status": status, "header": header})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{server.server_address[1]}"

    servers: list[ThreadingHTTPServer] = []
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_plain_http_registry_answers_only_when_insecure_is_asked(http_registry):
    address = http_registry()
    assert registry.answers(address, insecure=True, timeout=2) is None
    why = registry.answers(address, timeout=2)
    assert why is not None and why.startswith(f"registry {address}: https: "), why


def test_a_registry_that_wants_credentials_answers(http_registry):
    assert registry.answers(http_registry(status=401), insecure=True, timeout=2) is None


def test_a_web_server_is_no_registry(http_registry):
    why = registry.answers(http_registry(header=False), insecure=True, timeout=2)
    assert why is not None and "no registry" in why


def test_nothing_listening_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed
    why = registry.answers(f"127.0.0.1:{port}", insecure=True, timeout=2)
    assert why is not None and why.count("connection refused") == 2, why


@pytest.mark.parametrize("address", ["", "http://r:5000", "r:5000/v2", "r:port", "r:99999"])
def test_a_registry_address_is_host_and_port(address):
    with pytest.raises(InputError, match="registry"):
        registry.answers(address)


# ---- the command with no engine


def _sorctl(tmp_path, *args):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SORCTL_HOME": str(tmp_path / "h"),
           "DOCKER_HOST": "unix:///nonexistent"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "sorctl.cli.main", *args], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip


def test_no_engine_is_one_failed_line_with_its_fix(tmp_path):
    r = _sorctl(tmp_path, "doctor")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    first, fix = r.stdout.splitlines()[:2]
    assert first.startswith("✗ engine: no Docker engine answers"), r.stdout
    assert fix.startswith("    fix: start the Docker engine"), r.stdout
    doc = json.loads(_sorctl(tmp_path, "doctor", "--json").stdout)
    assert doc["ok"] is False and doc["checks"][0]["status"] == "fail"


def test_up_without_an_engine_points_at_doctor(tmp_path):
    r = _sorctl(tmp_path, "up", "--name", "doc")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    error, next_step = r.stderr.strip().splitlines()
    assert error.startswith("sorctl: error: no Docker engine answers") and next_step == HINT


@pytest.mark.parametrize(
    "endpoint, command",
    [
        ("ssh://me@h:2222", "`ssh -p 2222 me@h docker version`"),
        ("ssh://h", "`ssh h docker version`"),
        ("tcp://h:2375", "`docker -H tcp://h:2375 version`"),
        ("tcp://h:2376", "`docker -H tcp://h:2376 --tlsverify version`"),
        ("lab", "`docker --context lab version`"),
    ],
)
def test_a_host_that_fails_is_told_the_command_that_reaches_it_by_hand(endpoint, command):
    from sorctl.cluster.hosts import parse_host
    from sorctl.engine.doctor import _host_fix

    assert command in _host_fix(parse_host(endpoint))
