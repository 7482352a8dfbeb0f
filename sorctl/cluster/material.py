"""A cluster's shared secret and TLS material, kept on the host where only the user can read it.

Layout: ${SORCTL_HOME:-~/.config/sorctl}/clusters/<name>/{secret,cert.pem,key.pem}
(directory 0700, files 0600). dispy's TLS model: servers do not check client certificates and
clients verify the peer against `certfile` used as the CA without a hostname check, so every
role shares one self-signed certificate.
"""

from __future__ import annotations

import datetime
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from sorctl.errors import ClusterError


def home() -> Path:
    return Path(os.environ.get("SORCTL_HOME") or Path.home() / ".config" / "sorctl")


def cluster_dir(name: str) -> Path:
    return home() / "clusters" / name


@dataclass(frozen=True)
class Material:
    secret_file: Path
    cert_file: Path | None
    key_file: Path | None

    def files(self) -> dict[str, bytes]:
        """File name under the container's RUN_DIR -> content."""
        out = {"secret": self.secret_file.read_bytes()}
        if self.cert_file and self.key_file:
            out["cert.pem"] = self.cert_file.read_bytes()
            out["key.pem"] = self.key_file.read_bytes()
        return out


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def create(name: str, tls: bool) -> Material:
    """A fresh secret (and certificate) for cluster `name`, replacing any left-over copy."""
    d = cluster_dir(name)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    _write_private(d / "secret", secrets.token_hex(32).encode())
    if tls:
        cert, key = self_signed(f"sorctl-{name}")
        _write_private(d / "cert.pem", cert)
        _write_private(d / "key.pem", key)
    else:
        for stale in ("cert.pem", "key.pem"):
            (d / stale).unlink(missing_ok=True)
    return load(name)


def load(name: str) -> Material:
    d = cluster_dir(name)
    secret = d / "secret"
    if not secret.is_file():
        raise ClusterError(
            f"cluster {name!r}: its secret {secret} is missing; `sorctl down --name {name}` "
            "and bring it up again"
        )
    cert, key = d / "cert.pem", d / "key.pem"
    has_tls = cert.is_file() and key.is_file()
    return Material(secret, cert if has_tls else None, key if has_tls else None)


def remove(name: str) -> bool:
    d = cluster_dir(name)
    if not d.exists():
        return False
    shutil.rmtree(d)
    return True


def self_signed(common_name: str, days: int = 825) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM): a CA-capable self-signed EC P-256 certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
