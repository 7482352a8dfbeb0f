"""What this machine offers sorctl, checked without Docker: dispy's ports, the config
directory's permissions (the secrets' home), free disk. Each check is a `Check`, the line
`sorctl doctor` prints (sorctl.engine.doctor adds the checks that need an engine).
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sorctl.cluster import material
from sorctl.names import CLIENT_PORT, DISPY_PORT, NODE_PORT

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    """One line of `sorctl doctor`: what was checked, how it went, and the fix if it failed."""

    name: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def exit_status(checks: list[Check]) -> int:
    """1 when a check failed, else 0 (warnings do not fail)."""
    return 1 if any(c.status == FAIL for c in checks) else 0


# ---- dispy's ports

# What binds each port when this machine is a `--host` of a cluster (host networking), and how.
PORT_USES: dict[int, tuple[str, tuple[str, ...]]] = {
    DISPY_PORT: ("dispyscheduler, nodes' replies", ("tcp", "udp")),
    NODE_PORT: ("dispynode, dispynetrelay", ("tcp", "udp")),
    CLIENT_PORT: ("dispyscheduler's clients", ("tcp",)),
}


def _bind(address: str, port: int, proto: str) -> str | None:
    """None when `address:port` can be bound now, else why not (a bind sends nothing)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        if proto == "tcp":  # as dispy binds: connections left in TIME_WAIT do not count
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            return "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return None


def holder(port: int, proto: str) -> str | None:
    """`pid N (name)` of the process bound to the port, when psutil (optional) can tell."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        conns = psutil.net_connections(kind=proto)
    except (psutil.Error, OSError):
        return None
    for c in conns:
        if c.laddr and c.laddr.port == port and (proto == "udp" or c.status == psutil.CONN_LISTEN):
            if c.pid is None:
                return "a process of another user (run as root to name it)"
            try:
                return f"pid {c.pid} ({psutil.Process(c.pid).name()})"
            except psutil.Error:
                return f"pid {c.pid}"
    return None


def check_port(port: int, protos: tuple[str, ...] = ("tcp",), address: str = "0.0.0.0") -> Check:
    """Whether `port` can be bound on this machine for each protocol in `protos`."""
    use = PORT_USES.get(port, ("dispy", protos))[0]
    name = f"port {port}"
    busy = []
    for proto in protos:
        why = _bind(address, port, proto)
        if why is not None:
            who = holder(port, proto) if why == "in use" else None
            busy.append(f"{proto} {why}" + (f" by {who}" if who else ""))
    if not busy:
        return Check(name, OK, f"free ({', '.join(protos)}; {use})")
    return Check(
        name, WARN, f"{'; '.join(busy)} ({use})",
        f"free port {port} before this machine is a --host of a cluster (one-engine clusters "
        "do not bind it here)",
    )  # fmt: skip


def check_ports(address: str = "0.0.0.0") -> list[Check]:
    return [check_port(port, protos, address) for port, (_, protos) in PORT_USES.items()]


# ---- the config directory: secrets, TLS keys, host lists


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def check_config_dir(root: Path | None = None) -> Check:
    """The config directory as sorctl writes it: everything owned by this user, no directory
    writable by others, and each cluster's directory with its secret, keys and host list, and
    the solves' directory, for the owner alone."""
    root = root or material.home()
    name = "config"
    if not root.exists():
        return Check(name, OK, f"{root}: not made yet (`sorctl up` makes it owner-only)")
    uid, wrong, foreign = os.getuid(), [], []
    for path in [root, *sorted(root.rglob("*"))]:
        try:
            st = path.lstat()
        except OSError:
            continue  # removed while we looked
        if stat.S_ISLNK(st.st_mode):
            continue
        rel = path.relative_to(root)
        # clusters/<name>/ and all in it (material, hostplan), and solves/ itself (solvefeed)
        private = rel.parts[:1] == ("clusters",) and len(rel.parts) > 1 or rel.parts == ("solves",)
        if st.st_uid != uid:
            foreign.append(str(rel))
        elif (private and st.st_mode & 0o077) or (stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022):
            wrong.append(f"{rel} ({_mode(st)})")
    if foreign:
        return Check(
            name, FAIL, f"{root}: {len(foreign)} entr(y/ies) owned by another user: "
            f"{', '.join(foreign[:3])}", f"chown -R {os.getuid()} {root}",
        )  # fmt: skip
    if wrong:
        return Check(
            name, FAIL, f"{root}: others can read or write {', '.join(wrong[:3])}"
            + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""),
            f"chmod -R go-rwx {root}",
        )  # fmt: skip
    secrets = sum(1 for _ in root.glob("clusters/*/secret"))
    return Check(name, OK, f"{root}: yours, {secrets} cluster secret(s) readable by you alone")


# ---- free disk

# What a build takes: the five role images hold about 400 MB (`docker system df -v`: node
# 396 MB, the others sharing its base), the build's own layers and context as much again; the
# wheels in the cache are 107 MB (`du -sh ~/.cache/sorctl/wheels`).
BUILD_DOCKER_BYTES = 1_000_000_000
BUILD_CACHE_BYTES = 200_000_000


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free(name: str, path: Path, need: int) -> Check:
    """Free space where `path` is (or would be made): FAIL under `need`, WARN under twice it."""
    where = _existing(path)
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return Check(name, WARN, f"{path}: cannot tell ({exc.strerror or exc})")
    detail = f"{free / 1e9:.1f} GB free at {path} (a build needs about {need / 1e9:.1f} GB)"
    if free < need:
        return Check(name, FAIL, detail, f"free space on the file system of {where}")
    if free < 2 * need:
        return Check(name, WARN, detail, f"free space on the file system of {where}")
    return Check(name, OK, detail)
