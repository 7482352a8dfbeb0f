"""How a failed connection to a --host reads: one line with the cause; TLS files resolution."""

from __future__ import annotations

import ssl

import pytest

from sorctl.engine.connect import TLSFiles, why
from sorctl.errors import InputError


def chained(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    "exc,words",
    [
        (chained(RuntimeError("Max retries"), ssl.SSLCertVerificationError(
            1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")), "TLS verification"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (OSError("[Errno None] Unable to connect to port 2222 on 127.0.0.1"), "connection refused"),
        (RuntimeError("Read timed out."), "timed out"),
        (RuntimeError("Server 'x' not found in known_hosts"), "known_hosts"),
        (RuntimeError("Authentication failed."), "authentication failed"),
        (RuntimeError("[Errno 113] No route to host"), "no route to host"),
    ],
)  # fmt: skip
def test_causes_are_named_in_one_line(exc, words):
    text = why(exc)
    assert words in text and "\n" not in text


def test_tls_files_from_flags_or_docker_cert_path(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    assert TLSFiles.resolve() is None
    for f in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / f).write_text("x")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    files = TLSFiles.resolve()
    assert files is not None and files.ca == tmp_path / "ca.pem"
    with pytest.raises(InputError, match="--tlscacert"):
        TLSFiles.resolve(ca=tmp_path / "missing.pem")
