"""Building, listing and checking the sorctl images (one Dockerfile, one target per role).

`build()` picks a base (python:3.11-slim when the engine has it or a registry answers, else
sorctl-base:bookworm made with debootstrap), fetches the wheels to the host meanwhile, and builds
each role whose inputs hash changed, sending each role's build only the files its stages read.
It reports steps through a BuildWatch, writes the full log to the user's cache directory, keeps
the venv stages tagged as cache and removes what else a build leaves untagged.
`require_images()` is what the cluster commands call before starting anything.
"""

from __future__ import annotations

import base64
import hashlib
import io
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import platformdirs

from sorctl import names
from sorctl.engine.buildlog import BuildLog, BuildWatch, Built, Step, StepParser
from sorctl.errors import BuildError, ImageError
from sorctl.names import CACHE_STAGES, ROLES

DEFAULT_BASE = "python:3.11-slim"
OFFLINE_BASE = "sorctl-base:bookworm"
PULL_DEADLINE_S = 15.0

PACKAGE = Path(__file__).resolve().parent.parent  # the installed sorctl package
IMAGES = PACKAGE / "images"  # package data: the Dockerfile and its scripts
CONSTRAINTS = IMAGES / "constraints.txt"
DOCKERFILE = "images/Dockerfile"  # in the build context
# The scripts every role runs, where the Dockerfile's `COPY scripts/ /` puts them.
SCRIPTS = {
    "entrypoint.sh": "usr/local/bin/sorctl-entrypoint",
    "healthcheck.sh": "usr/local/bin/sorctl-healthcheck",
    "run-daemon.py": "usr/local/lib/sorctl/run-daemon.py",
}
SITE_PACKAGES = "opt/venv/lib/python3.11/site-packages"  # where the Dockerfile copies site/
# Applies sorctl's dispy shims in every Python of the node and client images.
DISPY_COMPAT_PTH = "import sorctl.distributed.dispy_compat as c; c.apply()\n"

# Wheels for the images' Python 3.11 on x86_64, at the versions CONSTRAINTS pins: binary from the
# registry (pip is pure, and only installs the others); dispy and pycos are sdist only and are
# built into pure wheels on the host.
BINARY_WHEELS = ("numpy", "scipy", "numba", "llvmlite", "psutil", "pip")
BUILT_WHEELS = ("dispy", "pycos")
DISPY_ONLY = ("dispy", "pycos", "psutil")  # what the scheduler and relay images carry
NUMERIC = ("numpy", "scipy", "numba", "llvmlite")  # what node and client carry besides
BUILD_ONLY = ("pip",)  # in the build, in no image
SOLVER_ROLES = ("client", "node")
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


def sorctl_site() -> dict[str, bytes]:
    """This sorctl as pip would install its wheel into site-packages (path -> bytes), packed
    from the installed package and its metadata, so the node and client images carry the very
    code the CLI runs; plus the .pth file that applies the dispy shims. Unpacked here, the
    image build needs no pip step and no extra stage for it."""
    dist = metadata.distribution("sorctl")
    info = f"sorctl-{dist.version}.dist-info"
    files = {
        f"sorctl/{p.relative_to(PACKAGE).as_posix()}": p.read_bytes() for p in _package_files()
    }
    # PKG-INFO: run from a checkout, the egg-info that `pip install -e` leaves there is found
    # first, and it has no METADATA
    meta = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    files[f"{info}/METADATA"] = meta.encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: sorctl\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    files[f"{info}/INSTALLER"] = b"sorctl\n"
    files["sorctl-dispy-compat.pth"] = DISPY_COMPAT_PTH.encode()
    record = "".join(f"{n},{_record_digest(d)},{len(d)}\n" for n, d in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    return files


def _role_wheels(role: str) -> tuple[str, ...]:
    """The wheels a role's build reads (the stages above its target included)."""
    if role == "router":
        return ()
    dispy = (*DISPY_ONLY, *BUILD_ONLY)
    return (*dispy, *NUMERIC) if role in SOLVER_ROLES else dispy


def context_members(role: str, site: dict[str, bytes] | None = None) -> dict[str, Path | bytes]:
    """The build context of one role (name in the context -> host file or bytes): only what
    the Dockerfile's stages up to that role's target read. Every role's build sends the same
    bytes under the same names, so Docker's layer cache serves one role's steps to the next."""
    members: dict[str, Path | bytes] = {DOCKERFILE: IMAGES / "Dockerfile"}
    members |= {f"scripts/{dest}": IMAGES / src for src, dest in SCRIPTS.items()}
    if role == "router":
        return members
    wheels = wheel_files()
    for name in _role_wheels(role):
        folder = "wheels-numeric" if name in NUMERIC else "wheels-dispy"
        members[f"{folder}/{wheels[name].name}"] = wheels[name]
    members["wheels-dispy/constraints.txt"] = CONSTRAINTS
    members["wheels-dispy/trim-venv.sh"] = IMAGES / "trim-venv.sh"
    if role in SOLVER_ROLES:
        site = sorctl_site() if site is None else site
        members |= {f"site/{name}": data for name, data in site.items()}
    return members


def inputs_hash(role: str, base_id: str) -> str:
    """A hash of everything that goes into one role's image; unchanged means no rebuild."""
    h = hashlib.sha256(f"{role}\0{sorctl_version()}\0{base_id}\0".encode())
    for path in sorted(IMAGES.iterdir()):
        if path.is_file() and not path.name.startswith("__init__"):
            h.update(f"images/{path.name}".encode() + b"\0" + path.read_bytes() + b"\0")
    wheels = wheel_files()
    for name in sorted(_role_wheels(role)):
        if name in wheels:  # names carry versions
            h.update(f"wheels/{wheels[name].name}\0{wheels[name].stat().st_size}\0".encode())
    if role in SOLVER_ROLES:  # the sorctl package they carry: its files
        for path in _package_files():
            h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def context_tar(dest, members: dict[str, Path | bytes]) -> None:
    """Write a build context as a tar: root-owned, fixed times (Docker's cache keys on them)."""
    with tarfile.open(fileobj=dest, mode="w") as tar:
        for name, source in members.items():
            if isinstance(source, Path):
                info = tar.gettarinfo(str(source), arcname=name)
                if name.startswith("scripts/usr/local/bin/"):
                    info.mode = 0o755
                with open(source, "rb") as fh:
                    _add(tar, info, fh)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(source), 0o644
                _add(tar, info, io.BytesIO(source))
    dest.seek(0)


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, fh) -> None:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    tar.addfile(info, fh)


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


def carried_packages(role: str) -> dict[str, str]:
    """The pinned packages a role's image carries, with their versions."""
    if role == "router":
        return {}
    wanted = DISPY_ONLY if role in ("scheduler", "relay") else DISPY_ONLY + NUMERIC
    return {name: version for name, version in pins().items() if name in wanted}


def _build_args(role: str, base: str) -> dict[str, str]:
    """BASE_IMAGE and the versions the runtime stages label (`<PACKAGE>_VERSION`): the same
    values in every role's build, so the stages they share stay cached."""
    args = {"BASE_IMAGE": base}
    for name, version in carried_packages(role).items():
        args[f"{name.upper()}_VERSION"] = version
    return args


def _labels(digest: str) -> dict[str, str]:
    """The labels that differ between the roles' builds: given at build time, so they land on
    the target's last steps only (the role and package labels are in the Dockerfile)."""
    return {names.LABEL_VERSION: sorctl_version(), names.LABEL_INPUTS_HASH: digest}


class _Reporter:
    """One role's build as it streams: every line to the log file (and to `echo` when
    verbose), each new step to the watch."""

    def __init__(self, role: str, buildlog: BuildLog, watch: BuildWatch | None, echo: Log | None):
        self.role, self.buildlog, self.watch, self.echo = role, buildlog, watch, echo
        self.parser = StepParser(self._step)

    def _step(self, step: Step) -> None:
        if self.watch is not None:
            self.watch.role_step(self.role, step)

    def lines(self, lines: list[str]) -> None:
        for line in lines:
            self.buildlog.write(f"  {self.role}: {line}")
            if self.echo is not None:
                self.echo(f"  {self.role}: {line}")


def _build_one(
    client, role: str, base: str, context, digest: str, reporter: _Reporter, log_path: Path
) -> StepParser:
    ref = image_ref(role)
    context.seek(0)
    stream = client.api.build(
        fileobj=context,
        custom_context=True,
        dockerfile=DOCKERFILE,
        target=role,
        tag=ref,
        buildargs=_build_args(role, base),
        labels=_labels(digest),
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    parser = reporter.parser
    for chunk in stream:
        reporter.lines(parser.feed(chunk))
        if parser.error is not None:
            break
    reporter.lines(parser.finish())
    if parser.error is not None:
        where, tail = parser.failure()
        raise BuildError(
            f"building {ref} failed at {where}: {parser.error} (full log: {log_path})",
            step=where,
            tail=tail,
            log_path=str(log_path),
        )
    if not has_image(client, ref):
        raise ImageError(f"building {ref} finished without the image")
    return parser


def _remove_if_dangling(client, image_id: str, log: Log) -> None:
    """Remove an image this build left untagged and childless; one a container still uses
    stays (said so)."""
    import docker.errors

    dangling = client.images.list(filters={"dangling": True})
    if not any(i.id.removeprefix("sha256:").startswith(image_id) for i in dangling):
        return
    try:
        client.images.remove(image_id)
    except docker.errors.APIError as exc:
        log(f"kept untagged image {image_id[:12]}: {exc.explanation or exc}")


def _sweep_kept(client, log: Log) -> None:
    """Remove the untagged sorctl images an earlier build had to keep (a container used them
    then: a rebuild while a cluster ran) that no container uses now."""
    import docker.errors

    for image in client.images.list(filters={"dangling": True, "label": names.LABEL_BUILT_BY}):
        try:
            client.images.remove(image.id)
            log(f"removed untagged image {image.short_id} an earlier build kept")
        except docker.errors.APIError:
            pass  # still used by a container: the next build looks again


def _tidy(client, parser: StepParser, replaced: str | None, log: Log) -> None:
    """After a role's build: tag the venv stages as the cache, and remove what else the build
    left untagged (other stages' last images, the image it replaced under the role's tag, the
    cache image a stage replaced)."""
    import docker.errors

    for stage, image_id in parser.stages.items():
        if image_id == parser.image:
            continue
        if stage in CACHE_STAGES:
            ref = names.cache_ref(stage, sorctl_version())
            try:
                before: str | None = client.images.get(ref).id.removeprefix("sha256:")
            except docker.errors.ImageNotFound:
                before = None
            client.api.tag(image_id, *ref.split(":"))
            if before and not before.startswith(image_id):
                _remove_if_dangling(client, before[:12], log)
        else:
            _remove_if_dangling(client, image_id, log)
    if replaced and parser.image and not replaced.startswith(parser.image):
        _remove_if_dangling(client, replaced[:12], log)


def _fetch_wheels_meanwhile(log: Log):
    """ensure_wheels() in a thread: it downloads while the base is looked for or made."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="sorctl-wheels")
    future = pool.submit(ensure_wheels, log)
    pool.shutdown(wait=False)
    return future


def build(
    roles: Iterable[str] | None = None,
    force: bool = False,
    log: Log = _stderr,
    client=None,
    base: str | None = None,
    watch: BuildWatch | None = None,
    verbose: bool = False,
) -> list[Built]:
    """Build the role images whose inputs changed (all of `roles` with force=True), on `base`
    when given (one from a registry), else on the one choose_base() picks.

    `log` hears one-line messages (the base, the wheels, where the full log is); `watch`
    hears each role's start, steps and result; with `verbose`, `log` also hears every line
    Docker prints. The full log is always written (BuildLog)."""
    import docker

    wanted = list(roles) if roles else list(ROLES)
    for role in wanted:
        image_ref(role)  # validates the name
    client = client or docker.from_env()
    buildlog = BuildLog(sorctl_version())

    def note(line: str) -> None:
        buildlog.write(line)
        log(line)

    # with a watch, a role's start and end are the watch's to show; the log has them still
    role_note = buildlog.write if watch is not None else note
    note(f"build log: {buildlog.path}")
    if watch is not None:
        watch.log_opened(buildlog.path)
    results: list[Built] = []
    try:
        wheels = _fetch_wheels_meanwhile(note)
        try:
            base = base or choose_base(client, note)
        finally:
            wheels.exception()  # wait: no half-written wheel when the base fails
        wheels.result()
        base_id = client.images.get(base).id
        site = sorctl_site()
        for role in [r for r in ROLES if r in wanted]:
            ref = image_ref(role)
            start = time.monotonic()
            digest = inputs_hash(role, base_id)
            current = _image_or_none(client, ref)
            labels = (current.labels or {}) if current is not None else {}
            if (
                not force
                and labels.get(names.LABEL_INPUTS_HASH) == digest
                and labels.get(names.LABEL_VERSION) == sorctl_version()
            ):
                role_note(f"{ref}: unchanged (inputs {digest}), skipped")
                done = Built(role, ref, "unchanged", time.monotonic() - start, _size_mb(current))
            else:
                if watch is not None:
                    watch.role_started(role, ref)
                role_note(f"{ref}: building on {base}")
                reporter = _Reporter(role, buildlog, watch, log if verbose else None)
                with tempfile.TemporaryFile() as context:
                    context_tar(context, context_members(role, site))
                    parser = _build_one(
                        client, role, base, context, digest, reporter, buildlog.path
                    )
                _tidy(client, parser, current.id.removeprefix("sha256:") if current else None,
                      note)  # fmt: skip
                image = client.images.get(ref)
                done = Built(role, ref, "built", time.monotonic() - start, _size_mb(image))
                role_note(f"{ref}: built in {done.seconds:.1f} s")
            results.append(done)
            if watch is not None:
                watch.role_finished(done)
        _sweep_kept(client, note)
    except BuildError as exc:
        for line in exc.tail:
            buildlog.write(f"  | {line}")
        buildlog.write(f"error: {exc}")
        raise
    finally:
        buildlog.close()
    return results


def _size_mb(image) -> float | None:
    return round(image.attrs["Size"] / 1e6, 1) if image is not None else None


def _image_or_none(client, ref: str):
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


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
    """Remove this version's role images and stage caches (every version's with all_versions;
    the base too)."""
    import docker.errors

    refs = [
        r.ref
        for r in list_images(client)
        if r.present and (all_versions or r.version == sorctl_version())
    ]
    versions = {r.version for r in list_images(client) if r.present} if all_versions else set()
    versions.add(sorctl_version())
    refs += [ref for v in sorted(v for v in versions if v) for stage in CACHE_STAGES
             if has_image(client, ref := names.cache_ref(stage, v))]  # fmt: skip
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
