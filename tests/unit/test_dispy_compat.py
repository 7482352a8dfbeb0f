"""sorctl.distributed.dispy_compat: each shim behaves like the original it replaces, and apply()
touches nothing the running Python still has. Runs on 3.11, 3.12 and 3.13 (where each shim is
needed in turn); no dispy process is involved. The TLS shim is checked with real TLS over
loopback."""

from __future__ import annotations

import importlib
import inspect
import io
import shutil
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from sorctl.distributed import dispy_compat

# ------------------------------------------------------------------ apply()


def test_apply_keeps_every_original_that_exists():
    before_getargspec = getattr(inspect, "getargspec", None)
    before_wrap = getattr(ssl, "wrap_socket", None)
    dispy_compat.apply()
    dispy_compat.apply()  # idempotent
    if before_getargspec is not None:
        assert inspect.getargspec is before_getargspec
    else:
        assert inspect.getargspec is dispy_compat.getargspec
    if before_wrap is not None:
        assert ssl.wrap_socket is before_wrap
    else:
        assert ssl.wrap_socket is dispy_compat.wrap_socket


def test_apply_installs_what_is_missing(monkeypatch):
    monkeypatch.delattr(inspect, "getargspec", raising=False)
    monkeypatch.delattr(ssl, "wrap_socket", raising=False)
    dispy_compat.apply()
    assert inspect.getargspec is dispy_compat.getargspec
    assert ssl.wrap_socket is dispy_compat.wrap_socket


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_cgi_is_importable_after_apply_and_real_where_it_exists():
    dispy_compat.apply()
    cgi = importlib.import_module("cgi")  # dispy.httpd does `import cgi` at module level
    if sys.version_info < (3, 13):
        assert cgi.FieldStorage is not dispy_compat.FieldStorage  # the standard library's
    else:
        assert cgi.FieldStorage is dispy_compat.FieldStorage


# ------------------------------------------------------------------ getargspec


def test_getargspec_reads_what_dispy_checks():
    # dispy: a job_status function takes exactly one argument, no *args/**kw/defaults.
    def job_status(job):
        return job

    spec = dispy_compat.getargspec(job_status)
    assert spec == (["job"], None, None, None)
    assert (spec.args, spec.varargs, spec.keywords, spec.defaults) == (["job"], None, None, None)

    def cluster_status(status, node, job, *rest, extra=None, **kw):
        pass

    with pytest.raises(ValueError):  # keyword-only parameters: refused, as the original did
        dispy_compat.getargspec(cluster_status)

    class Watcher:
        def status(self, job, flag=1, *args, **kwargs):
            pass

    spec = dispy_compat.getargspec(Watcher().status)
    assert spec.args == ["self", "job", "flag"]
    assert (spec.varargs, spec.keywords, spec.defaults) == ("args", "kwargs", (1,))


def test_getargspec_accepts_annotations():
    def job_status(job: object) -> None:
        pass

    assert dispy_compat.getargspec(job_status).args == ["job"]


# ------------------------------------------------------------------ cgi stand-in


def test_field_storage_parses_a_form_post_as_dispy_reads_it():
    body = b"host=10.213.1.5&cmd=node+info&empty=&host=second"
    form = dispy_compat.FieldStorage(
        fp=io.BytesIO(body + b"trailing bytes past Content-Length"),
        headers={"Content-Length": str(len(body))},
        environ={"REQUEST_METHOD": "POST"},
    )
    assert [(item.name, item.value) for item in form.list] == [
        ("host", "10.213.1.5"),
        ("cmd", "node info"),
        ("host", "second"),
    ]
    assert form.getvalue("cmd") == "node info"
    assert form.getlist("host") == ["10.213.1.5", "second"]
    assert form.getfirst("missing", "d") == "d"
    assert "cmd" in form and "nope" not in form


def test_field_storage_without_body_is_empty():
    form = dispy_compat.FieldStorage(fp=io.BytesIO(b""), headers={}, environ={})
    assert form.list == [] and form.keys() == []


# ------------------------------------------------------------------ TLS


def _self_signed(directory, name):
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a throwaway certificate")
    directory = tmp_path_factory.mktemp("tls")
    # CN is not an address of this host: dispy never checks host names, nor must the shim.
    return {"ours": _self_signed(directory, "sorctl-node"), "other": _self_signed(directory, "x")}


WRAPPERS = [pytest.param(dispy_compat.wrap_socket, id="shim")]
if hasattr(ssl, "wrap_socket"):  # Python 3.11: the original, to show both behave alike
    WRAPPERS.append(pytest.param(ssl.wrap_socket, id="original"))


def _tls_round_trip(wrap, server_cert, server_key, client_ca):
    """A dispy-style exchange: the server wraps an accepted socket with its cert (no client
    verification), the client verifies the server against `client_ca` (CERT_REQUIRED)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server_error: list[BaseException] = []

    def serve():
        conn, _ = listener.accept()
        try:
            tls = wrap(conn, keyfile=str(server_key), certfile=str(server_cert), server_side=True)
            tls.sendall(tls.recv(64).upper())
            tls.close()
        except (ssl.SSLError, OSError) as exc:
            server_error.append(exc)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            tls = wrap(raw, ca_certs=str(client_ca), cert_reqs=ssl.CERT_REQUIRED, server_side=False)
            tls.sendall(b"ping")
            return tls.recv(64)
    finally:
        thread.join(10)
        listener.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("wrap", WRAPPERS)
def test_tls_client_accepts_the_shared_certificate_without_host_name_check(wrap, certs):
    cert, key = certs["ours"]
    assert _tls_round_trip(wrap, cert, key, client_ca=cert) == b"PING"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("wrap", WRAPPERS)
def test_tls_client_rejects_a_server_with_another_certificate(wrap, certs):
    cert, key = certs["ours"]
    other_cert, _ = certs["other"]
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_round_trip(wrap, cert, key, client_ca=other_cert)


def test_tls_server_side_needs_a_certificate():
    with socket.socket() as raw, pytest.raises(ValueError):
        dispy_compat.wrap_socket(raw, server_side=True)
