"""sorctl.engine.images without Docker: tags, the apt mirror the offline base uses, the pip
settings that must not reach the wheel downloads, and stripping a library inside a wheel."""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from sorctl.engine import images


def test_image_ref_is_role_and_version():
    assert images.image_ref("node", "1.2.3") == "sorctl-node:1.2.3"
    assert images.image_ref("router") == f"sorctl-router:{images.sorctl_version()}"
    with pytest.raises(ValueError, match="unknown image role"):
        images.image_ref("nodes")


def test_apt_mirror_reads_deb822_sources_first(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
        "\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
    )
    (tmp_path / "sources.list").write_text("deb http://other.example/debian bookworm main\n")
    assert images.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_apt_mirror_reads_one_line_sources_and_skips_other_repositories(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "node.list").write_text(
        "deb https://deb.nodesource.com/x main\n"
    )
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian/ bookworm main\n"
    )
    assert images.apt_mirror(tmp_path) == "http://ftp.example/debian/"


def test_apt_mirror_falls_back_to_debians_own(tmp_path):
    assert images.apt_mirror(tmp_path) == "http://deb.debian.org/debian"


def test_pip_settings_that_change_what_is_fetched_do_not_leak(monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    env = images._scrubbed_env()
    assert "PIP_FIND_LINKS" not in env and "PIP_NO_INDEX" not in env
    assert env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.mark.skipif(shutil.which("strip") is None, reason="needs binutils' strip")
def test_strip_wheel_library_shrinks_it_and_keeps_the_record_true(tmp_path):
    # Any real ELF shared object will do: one of this Python's extension modules.
    import _ctypes

    lib = Path(_ctypes.__file__)
    member = "pkg/lib.so"
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    original = lib.read_bytes()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(member, original)
        zf.writestr("pkg/__init__.py", "")
        zf.writestr(
            "pkg-1.0.dist-info/RECORD",
            f"{member},sha256={_record_hash(original)},{len(original)}\n"
            "pkg/__init__.py,sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU,0\n"
            "pkg-1.0.dist-info/RECORD,,\n",
        )
    images.strip_wheel_library(wheel, member, log=lambda line: None)
    with zipfile.ZipFile(wheel) as zf:
        stripped = zf.read(member)
        record = zf.read("pkg-1.0.dist-info/RECORD").decode()
        assert zf.read("pkg/__init__.py") == b""
    assert stripped[:4] == b"\x7fELF" and len(stripped) <= len(original)
    assert f"{member},sha256={_record_hash(stripped)},{len(stripped)}" in record.splitlines()
