"""The registry side without Docker: the address, the engines' failures made one line with
their fix, the progress stream, and the probe against a real plain-HTTP server on loopback."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from sorctl.engine import registry
from sorctl.errors import InputError
from tests.cli_runner import run_cli


@pytest.mark.parametrize("good", ["10.0.0.5:5000", "reg.example.org:443", "[fd00::5]:5000"])
def test_a_registry_address_is_host_and_port(good):
    assert registry.parse_address(f" {good} ") == good


@pytest.mark.parametrize(
    "bad", ["10.0.0.5", "http://10.0.0.5:5000", "10.0.0.5:5000/v2", "reg:0", "reg:70000", ":5000"]
)
def test_anything_else_is_a_one_line_input_error(bad):
    with pytest.raises(InputError, match="HOST:PORT") as err:
        registry.parse_address(bad)
    assert "\n" not in str(err.value)


def test_the_engines_plain_http_refusal_names_the_fix():
    msg = 'Get "https://10.0.0.5:5000/v2/": http: server gave HTTP response to HTTPS client'
    line = registry.explain("host h2", "10.0.0.5:5000", msg, "10.0.0.5:5000/sorctl-node:1")
    assert line.startswith("host h2: the registry 10.0.0.5:5000 speaks plain HTTP")
    assert '"insecure-registries": ["10.0.0.5:5000"]' in line and "/etc/docker/daemon.json" in line
    here = registry.explain("this machine's engine", "r:1", msg, "x", here=True)
    assert "on this machine" in here


def test_a_missing_image_says_to_push_and_an_unreachable_registry_says_so():
    gone = "manifest for r:1/sorctl-node:1 not found: manifest unknown: manifest unknown"
    assert registry.absent(gone)
    line = registry.explain("host h1", "r:1", gone, "r:1/sorctl-node:1")
    assert line.endswith("run `sorctl images push --registry r:1`")
    dial = 'Get "https://r:1/v2/": dial tcp 10.0.0.9:1: connect: no route to host\nmore'
    assert not registry.absent(dial)
    line = registry.explain("host h1", "r:1", dial, "x")
    assert line.startswith("host h1: cannot reach the registry r:1: ") and "\n" not in line
    login = "unauthorized: authentication required"
    assert "`docker login r:1` on that host" in registry.explain("host h1", "r:1", login, "x")
    cert = "x509: certificate signed by unknown authority"
    assert "/etc/docker/certs.d/r:1/ca.crt" in registry.explain("host h1", "r:1", cert, "x")


def test_progress_counts_each_layer_once_and_the_stream_error_is_returned():
    seen: list[int] = []
    moved: dict[str, int] = {}
    lines = [
        {"status": "Pulling fs layer", "id": "a"},
        {"status": "Downloading", "id": "a", "progressDetail": {"current": 10, "total": 30}},
        {"status": "Downloading", "id": "b", "progressDetail": {"current": 5, "total": 5}},
        {"status": "Downloading", "id": "a", "progressDetail": {"current": 30, "total": 30}},
        {"status": "Extracting", "id": "a", "progressDetail": {"current": 99, "total": 99}},
        {"status": "Already exists", "id": "c"},
    ]
    assert registry._stream(lines, seen.append, moved) is None
    assert seen == [10, 15, 35] and sum(moved.values()) == 35
    failing = [{"status": "Pushing", "id": "a"}, {"error": "denied", "errorDetail": {}}]
    assert registry._stream(failing, None, {}) == "denied"


@pytest.fixture
def plain_registry():
    """A plain-HTTP server on loopback that answers /v2/ as a registry does."""

    class V2(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's API)
            self.send_response(200 if self.path == "/v2/" else 404)
            self.send_header(registry.API_HEADER, "registry/2.0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), V2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_probe_tells_plain_http_from_tls_and_from_nothing(plain_registry):
    assert registry.answers(plain_registry, insecure=True) is None
    assert "no TLS there" in registry.answers(plain_registry)
    assert "plain HTTP" in registry.describe(plain_registry)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    line = registry.describe(closed, timeout=1.0)
    assert line.startswith(f"registry {closed}: no answer from this machine (") and "\n" not in line


@pytest.fixture
def tls_registry(tmp_path):
    """The same server behind TLS, with a certificate of a CA this machine does not trust."""
    import ssl

    from tests import lab as simlab

    ca = simlab._CA("unit registry")
    key, cert = ca.issue("registry", ips=["127.0.0.1"], server=True)
    (tmp_path / "cert.pem").write_bytes(simlab._pem_cert(cert))
    (tmp_path / "key.pem").write_bytes(simlab._pem_key(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    class V2(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's API)
            self.send_response(200)
            self.send_header(registry.API_HEADER, "registry/2.0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), V2)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", simlab._pem_cert(ca.cert)
    server.shutdown()
    server.server_close()


def test_tls_with_a_ca_this_machine_lacks_is_still_said_to_be_tls(
    tls_registry, tmp_path, monkeypatch
):
    address, ca_pem = tls_registry
    assert "TLS verification failed" in registry.answers(address)
    line = registry.describe(address)
    assert line.startswith(f"registry {address}: TLS, its certificate not checked here"), line
    # with its CA where the engine looks for it (certs.d), the probe checks it and it holds
    monkeypatch.setattr(registry, "CERTS_D", tmp_path / "certs.d")
    (tmp_path / "certs.d" / address).mkdir(parents=True)
    (tmp_path / "certs.d" / address / "ca.crt").write_bytes(ca_pem)
    assert registry.answers(address) is None
    assert registry.describe(address) == f"registry {address}: TLS"


def test_the_cli_refuses_a_bad_registry_before_anything_runs(capsys, monkeypatch):
    def cli(*args):
        return run_cli(args, capsys, monkeypatch)

    code, _, err = cli("images", "push", "--registry", "http://10.0.0.5:5000")
    assert code == 2 and "HOST:PORT" in err
    code, _, err = cli("images", "push")
    assert code == 2 and "--registry" in err
    code, _, err = cli("up", "--registry", "10.0.0.5:5000")
    assert code == 2 and "--registry goes with --host" in err
    code, _, err = cli("scale", "--registry", "10.0.0.5:5000", "--remove-host", "ssh://h")
    assert code == 2 and "--registry goes with --add-host" in err


def test_a_failed_up_with_a_registry_names_it_in_the_doctor_hint():
    from sorctl.cli.doctor_cmd import hint

    line = hint(["ssh://me@a"], "10.0.0.5:5000")
    assert line.startswith("run `sorctl doctor --host ssh://me@a --registry 10.0.0.5:5000 ")
    assert "--insecure-registry" in line and hint(["ssh://me@a"]) == hint(["ssh://me@a"], None)
