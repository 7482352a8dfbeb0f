"""Per-cluster secret and TLS material on the host: fresh, private, removable."""

from __future__ import annotations

import ssl
import stat

import pytest
from cryptography import x509

from sorctl.cluster import material
from sorctl.errors import ClusterError


@pytest.fixture(autouse=True)
def sorctl_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SORCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_is_fresh_and_private(sorctl_home):
    a = material.create("c1", tls=False)
    first = a.secret_file.read_text()
    b = material.create("c1", tls=False)
    assert len(first) == 64 and b.secret_file.read_text() != first
    assert mode(material.cluster_dir("c1")) == 0o700
    assert mode(b.secret_file) == 0o600
    assert b.cert_file is None and set(b.files()) == {"secret"}
    assert material.cluster_dir("c1").parent.parent == sorctl_home


def test_tls_material_is_one_self_signed_ca_certificate(tmp_path):
    m = material.create("c2", tls=True)
    assert mode(m.cert_file) == 0o600 and mode(m.key_file) == 0o600
    cert = x509.load_pem_x509_certificate(m.cert_file.read_bytes())
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # What dispy does with it: the same file as server cert and as the client's CA.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(m.cert_file, m.key_file)
    client = ssl.create_default_context(cafile=str(m.cert_file))
    assert client.get_ca_certs()
    assert set(m.files()) == {"secret", "cert.pem", "key.pem"}


def test_load_and_remove():
    material.create("c3", tls=False)
    assert material.load("c3").secret_file.is_file()
    assert material.remove("c3") is True
    assert material.remove("c3") is False
    with pytest.raises(ClusterError, match="secret"):
        material.load("c3")
