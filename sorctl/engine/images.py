"""Building, listing and checking the sorctl images (one Dockerfile, one target per role).

`build()` picks a base (python:3.11-slim when the engine has it or a registry answers, else
sorctl-base:bookworm made with debootstrap), makes sure the wheels are on the host, and builds
each role whose inputs hash changed. `require_images()` is what the cluster commands call
before starting anything.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import platformdirs

from sorctl import names
from sorctl.errors import ImageError
from sorctl.names import ROLES

DEFAULT_BASE = "python:3.11-slim"
OFFLINE_BASE = "sorctl-base:bookworm"
PULL_DEADLINE_S = 15.0

PACKAGE = Path(__file__).resolve().parent.parent  # the installed sorctl package
IMAGES = PACKAGE / "images"  # package data: the Dockerfile and its scripts
CONSTRAINTS = IMAGES / "constraints.txt"
DOCKERFILE = "images/Dockerfile"  # in the build context

# Wheels for the images' Python 3.11 on x86_64, at the versions CONSTRAINTS pins: binary from the
# registry; dispy and pycos are sdist only and are built into pure wheels on the host.
BINARY_WHEELS = ("numpy", "scipy", "numba", "llvmlite", "psutil")
BUILT_WHEELS = ("dispy", "pycos")
DISPY_ONLY = ("dispy", "pycos", "psutil")  # what the scheduler and relay images carry
WHEEL_PLATFORM = (
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
)
# PIP_* settings that tell pip how to reach the registry; every other one (PIP_FIND_LINKS,
# PIP_NO_INDEX, PIP_TARGET, ...) would change what lands in the wheel cache.
PIP_KEEP = {
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_PROXY",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
}

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def sorctl_version() -> str:
    return metadata.version("sorctl")


def image_ref(role: str, version: str | None = None) -> str:
    """`sorctl-<role>:<version>`, this sorctl's version by default."""
    return names.image_ref(role, version or sorctl_version())


def pins() -> dict[str, str]:
    """Package -> pinned version, from CONSTRAINTS."""
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.strip().lower()] = version.strip()
    return out


def wheel_dir() -> Path:
    """Where downloaded wheels are kept: the user's cache (XDG), never the package itself."""
    return Path(platformdirs.user_cache_dir("sorctl")) / "wheels"


def image_problem(client, role: str, version: str | None = None) -> tuple[str, str] | None:
    """(what is wrong, the command that fixes it) for a role image that is missing or was built
    by another sorctl version (its org.sorctl.version label); None when it is there and current."""
    import docker.errors

    want = version or sorctl_version()
    ref = image_ref(role, want)
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return f"image {ref} is missing", "sorctl images build"
    have = (image.labels or {}).get(names.LABEL_VERSION)
    if have != want:
        return (
            f"image {ref} was built for sorctl {have or '(no version label)'}, not {want}",
            "sorctl images build --force",
        )
    return None


def require_images(client, roles: Iterable[str], version: str | None = None) -> None:
    """Refuse, with a message naming the image and the fix, a role image that is missing or
    was built by another sorctl version."""
    for role in roles:
        problem = image_problem(client, role, version)
        if problem is not None:
            raise ImageError(f"{problem[0]}: run `{problem[1]}`")


# ---------------------------------------------------------------- build inputs


def _scrubbed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in PIP_KEEP}


def _wheel_name(path: Path) -> str:
    return path.name.split("-", 1)[0].lower().replace("_", "-")


def wheel_files() -> dict[str, Path]:
    """The cached wheels at the pinned versions, by project name."""
    pinned = pins()
    return {
        _wheel_name(p): p
        for p in sorted(wheel_dir().glob("*.whl"))
        if pinned.get(_wheel_name(p)) == p.name.split("-")[1]
    }


def strip_wheel_library(wheel: Path, member: str, log: Log = _stderr) -> None:
    """Strip the symbol table of one shared library inside a wheel, in place (its RECORD line
    updated). For llvmlite's 180 MB libllvmlite.so this is 19 MB less in the node image; its
    dynamic symbols stay, so loading it is unchanged. Skipped when the host has no `strip`."""
    strip = shutil.which("strip")
    if strip is None:
        log(f"wheels: no `strip` on this host; {member} stays unstripped (node image +19 MB)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp, "lib.so")
        with zipfile.ZipFile(wheel) as src:
            lib.write_bytes(src.read(member))
            subprocess.run([strip, "--strip-unneeded", str(lib)], check=True)
            data = lib.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            out = Path(tmp, wheel.name)
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
                for info in src.infolist():
                    body = data if info.filename == member else src.read(info.filename)
                    if info.filename.endswith(".dist-info/RECORD"):
                        body = re.sub(
                            rf"^{re.escape(member)},[^\n]*$",
                            f"{member},sha256={digest},{len(data)}",
                            body.decode(),
                            flags=re.M,
                        ).encode()
                    dst.writestr(info, body)
        os.replace(out, wheel)


def ensure_wheels(log: Log = _stderr) -> dict[str, Path]:
    """Download the pinned wheels the images install, unless the cache already has them."""
    have, pinned, dest = wheel_files(), pins(), wheel_dir()
    binary = [f"{n}=={pinned[n]}" for n in BINARY_WHEELS if n not in have]
    built = [f"{n}=={pinned[n]}" for n in BUILT_WHEELS if n not in have]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    dest.mkdir(parents=True, exist_ok=True)
    for what, cmd in (
        (binary, [*pip, "download", "--no-deps", "--only-binary=:all:", *WHEEL_PLATFORM, "-d",
                  str(dest)]),
        (built, [*pip, "wheel", "--no-deps", "-w", str(dest)]),
    ):  # fmt: skip
        if not what:
            continue
        log(f"wheels: fetching {' '.join(what)} into {dest}")
        done = subprocess.run([*cmd, *what], env=_scrubbed_env(), capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ImageError(f"cannot fetch wheels {' '.join(what)}: {tail}")
    if any(spec.startswith("llvmlite==") for spec in binary):
        strip_wheel_library(wheel_files()["llvmlite"], "llvmlite/binding/libllvmlite.so", log)
    return wheel_files()


def _package_files() -> list[Path]:
    """The sorctl package as installed (editable or from a wheel: the same files)."""
    return sorted(
        p
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def _record_digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def sorctl_wheel(dest: Path) -> Path:
    """This sorctl as a wheel in `dest`, packed from the installed package and its metadata,
    so the node and client images install the very code the CLI runs. Fixed timestamps make
    the same code the same bytes (Docker's layer cache keys on them)."""
    dist = metadata.distribution("sorctl")
    version = dist.version
    info = f"sorctl-{version}.dist-info"
    files = {
        f"sorctl/{p.relative_to(PACKAGE).as_posix()}": p.read_bytes() for p in _package_files()
    }
    # PKG-INFO: run from a checkout, the egg-info that `pip install -e` leaves there is found
    # first, and it has no METADATA (an empty one makes pip fail in the image build)
    meta = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    files[f"{info}/METADATA"] = meta.encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: sorctl\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    record = "".join(f"{n},{_record_digest(d)},{len(d)}\n" for n, d in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = dest / f"sorctl-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return path


def _context_files(sorctl_whl: Path | None = None) -> list[tuple[Path, str]]:
    """(host path, path in the build context): the Dockerfile's inputs and nothing else."""
    files = [(p, f"images/{p.name}") for p in sorted(IMAGES.iterdir()) if p.is_file()]
    files += [(p, f"wheels/{p.name}") for p in wheel_files().values()]
    if sorctl_whl is not None:
        files.append((sorctl_whl, f"sorctl/{sorctl_whl.name}"))
    return files


def inputs_hash(role: str, base_id: str) -> str:
    """A hash of everything that goes into one role's image; unchanged means no rebuild."""
    h = hashlib.sha256(f"{role}\0{sorctl_version()}\0{base_id}\0".encode())
    for path, name in _context_files():
        if name.startswith("images/__init__"):
            continue
        if name.startswith("wheels/"):
            if role == "router" or (
                role in ("scheduler", "relay") and _wheel_name(path) not in DISPY_ONLY
            ):
                continue
            h.update(f"{name}\0{path.stat().st_size}\0".encode())  # names carry versions
        else:
            h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    if role in ("node", "client"):  # the sorctl wheel they install: the package's files
        for path in _package_files():
            h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _context_tar(dest, sorctl_whl: Path) -> None:
    """The build context as a tar: images/, wheels/ and sorctl/ (its wheel)."""
    with tarfile.open(fileobj=dest, mode="w") as tar:
        for path, name in _context_files(sorctl_whl):
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    dest.seek(0)


# ---------------------------------------------------------------- base image


def has_image(client, ref: str) -> bool:
    import docker.errors

    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _pull_quickly(client, ref: str, log: Log) -> bool:
    """Try the registry once; give up when it does not answer within PULL_DEADLINE_S."""
    result: list[bool] = []

    def pull() -> None:
        try:
            client.images.pull(ref)
            result.append(True)
        except Exception as exc:  # no registry, no DNS, refused: all mean "offline"
            log(f"base: cannot pull {ref} ({str(exc).splitlines()[0][:120]})")
            result.append(False)

    worker = threading.Thread(target=pull, daemon=True)
    worker.start()
    worker.join(PULL_DEADLINE_S)
    if not result:
        log(f"base: no registry answered within {PULL_DEADLINE_S:.0f} s")
    return bool(result and result[0])


def apt_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt sources use (deb822 or one-line format)."""
    sources = sorted(apt_dir.glob("sources.list.d/*.sources"))
    sources += [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        uris = re.findall(r"^URIs:\s*(.+)$", text, re.M)
        uris = [u for line in uris for u in line.split()]
        uris += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M)
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def has_debootstrap() -> bool:
    """debootstrap is installed (in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("debootstrap") is not None or Path("/usr/sbin/debootstrap").exists()


def make_offline_base(log: Log = _stderr) -> None:
    """sorctl-base:bookworm from Debian's packages: debootstrap, strip, docker import."""
    if not has_debootstrap():
        raise ImageError(
            f"no registry answers and debootstrap is missing: install it (apt-get install "
            f"debootstrap, as root) or load {DEFAULT_BASE} into the engine"
        )
    if os.geteuid() != 0:
        raise ImageError("making the offline base image needs root (debootstrap): run as root")
    mirror = apt_mirror()
    log(f"base: making {OFFLINE_BASE} with debootstrap from {mirror} (about a minute)")
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
    }
    done = subprocess.run(
        [str(IMAGES / "make-base.sh"), OFFLINE_BASE, mirror],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:]) or "(no output)"
        raise ImageError(f"making {OFFLINE_BASE} failed: {tail}")


def choose_base(client, log: Log = _stderr) -> str:
    """The base to build on, saying which path it took."""
    if has_image(client, DEFAULT_BASE):
        log(f"base: {DEFAULT_BASE} (found in the engine)")
        return DEFAULT_BASE
    if has_image(client, OFFLINE_BASE):
        log(f"base: {OFFLINE_BASE} (offline base, made earlier with debootstrap)")
        return OFFLINE_BASE
    if _pull_quickly(client, DEFAULT_BASE, log):
        log(f"base: {DEFAULT_BASE} (pulled from the registry)")
        return DEFAULT_BASE
    start = time.monotonic()
    make_offline_base(log)
    log(
        f"base: {OFFLINE_BASE} (offline base, made now with debootstrap in "
        f"{time.monotonic() - start:.0f} s)"
    )
    return OFFLINE_BASE


# ---------------------------------------------------------------- build


@dataclass
class Built:
    role: str
    ref: str
    action: str  # "built" or "unchanged"
    seconds: float


def carried_packages(role: str) -> dict[str, str]:
    """The pinned packages a role's image carries, with their versions."""
    if role == "router":
        return {}
    wanted = DISPY_ONLY if role in ("scheduler", "relay") else BINARY_WHEELS + BUILT_WHEELS
    return {name: version for name, version in pins().items() if name in wanted}


def _labels(role: str, digest: str) -> dict[str, str]:
    labels = {
        names.LABEL_VERSION: sorctl_version(),
        names.LABEL_ROLE: role,
        names.LABEL_INPUTS_HASH: digest,
    }
    for name, version in carried_packages(role).items():
        labels[names.IMAGE_PACKAGE_LABEL.format(name)] = version
    return labels


def _build_one(client, role: str, base: str, context, labels: dict[str, str], log: Log) -> None:
    ref = image_ref(role)
    context.seek(0)
    stream = client.api.build(
        fileobj=context,
        custom_context=True,
        dockerfile=DOCKERFILE,
        target=role,
        tag=ref,
        buildargs={"BASE_IMAGE": base},
        labels=labels,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk:
            raise ImageError(f"building {ref} failed: {chunk['error'].strip()}")
        text = chunk.get("stream", "").rstrip()
        if text:
            for line in text.splitlines():
                log(f"  {role}: {line}")
    if not has_image(client, ref):
        raise ImageError(f"building {ref} finished without the image")


def build(
    roles: Iterable[str] | None = None,
    force: bool = False,
    log: Log = _stderr,
    client=None,
    base: str | None = None,
) -> list[Built]:
    """Build the role images whose inputs changed (all of `roles` with force=True), on `base`
    when given (one from a registry), else on the one choose_base() picks."""
    import docker

    wanted = list(roles) if roles else list(ROLES)
    for role in wanted:
        image_ref(role)  # validates the name
    client = client or docker.from_env()
    base = base or choose_base(client, log)
    base_id = client.images.get(base).id
    ensure_wheels(log)
    results: list[Built] = []
    with tempfile.TemporaryFile() as context, tempfile.TemporaryDirectory() as whl_dir:
        context_ready = False
        for role in [r for r in ROLES if r in wanted]:
            ref = image_ref(role)
            start = time.monotonic()
            digest = inputs_hash(role, base_id)
            current = _labels_of(client, ref)
            if (
                not force
                and current.get(names.LABEL_INPUTS_HASH) == digest
                and current.get(names.LABEL_VERSION) == sorctl_version()
            ):
                log(f"{ref}: unchanged (inputs {digest}), skipped")
                results.append(Built(role, ref, "unchanged", time.monotonic() - start))
                continue
            if not context_ready:
                _context_tar(context, sorctl_wheel(Path(whl_dir)))
                context_ready = True
            log(f"{ref}: building on {base}")
            _build_one(client, role, base, context, _labels(role, digest), log)
            results.append(Built(role, ref, "built", time.monotonic() - start))
            log(f"{ref}: built in {results[-1].seconds:.1f} s")
    return results


def _labels_of(client, ref: str) -> dict[str, str]:
    import docker.errors

    try:
        return client.images.get(ref).labels or {}
    except docker.errors.ImageNotFound:
        return {}


# ---------------------------------------------------------------- list / rm


@dataclass
class ImageRow:
    role: str
    ref: str
    present: bool
    version: str | None = None
    size_mb: float | None = None
    created: str | None = None
    inputs_hash: str | None = None
    packages: dict[str, str] = field(default_factory=dict)  # pinned package -> version


def list_images(client) -> list[ImageRow]:
    """Every role image sorctl knows (any version), plus the missing ones of this version."""
    rows: list[ImageRow] = []
    seen = set()
    for image in client.images.list(filters={"label": names.LABEL_ROLE}):
        labels = image.labels or {}
        for tag in image.tags:
            role = labels.get(names.LABEL_ROLE, "?")
            if not tag.startswith(f"sorctl-{role}:"):
                continue
            seen.add(tag)
            rows.append(
                ImageRow(
                    role,
                    tag,
                    True,
                    labels.get(names.LABEL_VERSION),
                    round(image.attrs["Size"] / 1e6, 1),
                    image.attrs.get("Created", "")[:19],
                    labels.get(names.LABEL_INPUTS_HASH),
                    {
                        name: labels[key]
                        for name in pins()
                        if (key := names.IMAGE_PACKAGE_LABEL.format(name)) in labels
                    },
                )
            )
    for role in ROLES:
        if image_ref(role) not in seen:
            rows.append(ImageRow(role, image_ref(role), False))
    order = {r: i for i, r in enumerate(ROLES)}
    return sorted(rows, key=lambda r: (r.version or "", order.get(r.role, 99), r.ref))


def remove_images(client, all_versions: bool = False, base: bool = False, log: Log = _stderr):
    """Remove this version's role images (every version's with all_versions; the base too)."""
    import docker.errors

    refs = [
        r.ref
        for r in list_images(client)
        if r.present and (all_versions or r.version == sorctl_version())
    ]
    if base and has_image(client, OFFLINE_BASE):
        refs.append(OFFLINE_BASE)
    removed = []
    for ref in refs:
        try:
            client.images.remove(ref)
        except docker.errors.APIError as exc:
            raise ImageError(f"cannot remove {ref}: {exc.explanation or exc}") from None
        log(f"removed {ref}")
        removed.append(ref)
    return removed
