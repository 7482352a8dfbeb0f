"""`sorctl solve` on a running cluster: the host side of the distributed solve.

dispy discovers by broadcast, so the dispy client never runs on the host: the solve runs in a
client container (image sorctl-client) on the cluster's client network, with the routes that
reach remote subnets. The host puts the validated system and the cluster's secret into the
container, follows its JSON progress lines, copies checkpoints and the result out, and always
removes the container (Ctrl-C included; the scheduler and nodes stay up and usable).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, UserError
from solver.result import SolveResult

CLIENT_UID = 990  # the images' `sorctl` user
WORK = "/home/sorctl/solve"
RUN_DIR = "/run/sorctl"
STOP_GRACE_S = 20  # after Ctrl-C: time for the client to cancel its jobs and close


def _docker():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception:  # noqa: BLE001 -- no engine means no cluster: solve locally
        return None
    return client


def find_running(name: str | None):
    """The running cluster to solve on (None: solve locally).

    Running means: its scheduler container runs and at least one node container runs.
    """
    from cli.cluster.observe import find_cluster
    from cli.cluster.plan import DEFAULT_NAME

    client = _docker()
    if client is None:
        return None
    try:
        info = find_cluster(client, name or DEFAULT_NAME)
    finally:
        client.close()
    if info is None or not info.scheduler_address or not info.network:
        return None
    sched_up = any(c.state == "running" for c in info.role("scheduler"))
    nodes_up = any(c.state == "running" for c in info.nodes)
    return info if sched_up and nodes_up else None


def run(
    info,
    system,
    *,
    omega: float | None,
    rtol: float,
    atol: float,
    maxiter: int,
    method: str,
    inner_sweeps: int = 1,
    checkpoint: str | os.PathLike | None = None,
    progress: Callable[[int, float], None] | None = None,
    blocks: int | None = None,
    check_every: int | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
    checkpoint_every_s: float = 30.0,
    ready_timeout: float = 60.0,
    job_timeout: float = 600.0,
) -> SolveResult:
    """Solve `system` (a validated solver.io.System) on cluster `info` (observe.ClusterInfo).

    Raises UserError (cluster failures, exit 1), InputError-like UserError (exit 2),
    KeyboardInterrupt (Ctrl-C: nothing written but the checkpoint, if asked for).
    """
    from cli.images import image_ref, require_images
    from solver import io as sio
    from solver.distributed import wire
    from solver.distributed.driver import METHODS

    if method not in METHODS:
        raise UserError(
            f"--method {method} runs locally only (use --local); on a cluster: "
            + ", ".join(METHODS),
            EXIT_BAD_INPUT,
        )
    client = _docker()
    if client is None:
        raise UserError("no Docker engine answers; cannot reach the cluster")
    require_images(client, ["client"])
    nodes_up = sum(1 for c in info.nodes if c.state == "running")
    args = [
        "python", "-m", "solver.distributed",
        "--system", f"{WORK}/system.npz",
        "--out", f"{WORK}/result.npz",
        "--scheduler", info.scheduler_address,
        "--port", str(info.scheduler_port),
        "--nodes", str(nodes_up),
        "--ready-timeout", str(ready_timeout),
        "--rtol", repr(float(rtol)),
        "--atol", repr(float(atol)),
        "--maxiter", str(int(maxiter)),
        "--method", method,
        "--inner-sweeps", str(int(inner_sweeps)),
        "--job-timeout", str(job_timeout),
        "--backend", f"cluster:{info.name}",
    ]  # fmt: skip
    if info.tls:  # dispy's TLS model: the shared certificate is also the CA
        args += ["--certfile", f"{RUN_DIR}/cert.pem", "--keyfile", f"{RUN_DIR}/key.pem"]
    if omega is not None:
        args += ["--omega", repr(float(omega))]
    if blocks:
        args += ["--blocks", str(int(blocks))]
    if check_every:
        args += ["--check-every", str(int(check_every))]
    if checkpoint:
        args += ["--checkpoint", f"{WORK}/checkpoint.npz"]
        args += ["--checkpoint-every", str(checkpoint_every_s)]

    from cli.cluster.plan import LABEL_CLUSTER, LABEL_ROLE

    name = f"{info.name}-solve-{secrets.token_hex(3)}"
    container = None
    with tempfile.TemporaryDirectory(prefix="sorctl-solve-") as tmp:
        sys_path = Path(tmp) / "system.npz"
        sio.save_system(sys_path, system.A, system.b, system.x0)
        try:
            container = client.containers.create(
                image_ref("client"),
                command=args,
                name=name,
                environment=info.client_env(),
                labels={LABEL_CLUSTER: info.name, LABEL_ROLE: "client"},
                network=info.network,
                cap_add=["NET_ADMIN"] if info.routes else None,
                detach=True,
            )
            _put(container, "/home/sorctl", _work_tar(sys_path))
            _put(container, "/run", _material_tar(info))
            container.start()
            last = _follow(container, progress, on_event, log, checkpoint, wire)
            code = int(container.wait(timeout=60).get("StatusCode", 1))
            if code in (0, 3):
                out = Path(tmp) / "result.npz"
                _copy_out(container, f"{WORK}/result.npz", out)
                return wire.read_result(out)
            message = (last or {}).get("message") or (
                f"the solve container exited with code {code}" + _tail(container)
            )
            if code == EXIT_INTERRUPTED:
                raise KeyboardInterrupt
            raise UserError(f"solve on cluster {info.name}: {message}",
                            EXIT_BAD_INPUT if code == EXIT_BAD_INPUT else EXIT_FAILURE)  # fmt: skip
        except KeyboardInterrupt:
            if container is not None:
                _stop(container)
            raise
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
            client.close()


def _follow(container, progress, on_event, log, checkpoint, wire) -> dict[str, Any] | None:
    """Read the client's stdout until it exits; returns its last error message, if any."""
    error = None
    buf = b""
    for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            msg = wire.parse(line)
            if msg is None:
                if line.startswith(wire.LOG_PREFIX):
                    (log or _stderr)(line[len(wire.LOG_PREFIX) :].strip())
                continue
            kind = msg["type"]
            if kind == "progress" and progress:
                progress(int(msg["iteration"]), float(msg["residual"] or float("nan")))
            elif kind == "event" and on_event:
                on_event(msg)
            elif kind == "checkpoint" and checkpoint:
                try:
                    _copy_out(container, msg["path"], Path(checkpoint))
                except Exception as exc:  # noqa: BLE001 -- superseded meanwhile; the next one comes
                    if log:
                        log(f"checkpoint at iteration {msg.get('iteration')} not copied: {exc}")
            elif kind == "error":
                error = msg
    return error


def _stderr(message: str) -> None:
    sys.stderr.write(f"sorctl: {message}\n")


def _stop(container) -> None:
    """Ctrl-C: the client cancels its jobs and closes its computation (the nodes clean up)."""
    with contextlib.suppress(Exception):
        container.kill(signal="SIGINT")
        container.wait(timeout=STOP_GRACE_S)


def _put(container, parent: str, data: bytes) -> None:
    if not container.put_archive(parent, data):
        raise UserError(f"cannot copy files into the solve container {container.name}")


def _work_tar(system_file: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo(Path(WORK).name)
        top.type, top.mode, top.uid, top.gid = tarfile.DIRTYPE, 0o700, CLIENT_UID, CLIENT_UID
        tar.addfile(top)
        info = tar.gettarinfo(str(system_file), arcname=f"{top.name}/system.npz")
        info.mode, info.uid, info.gid = 0o600, CLIENT_UID, CLIENT_UID
        with open(system_file, "rb") as fh:
            tar.addfile(info, fh)
    return buf.getvalue()


def _material_tar(info) -> bytes:
    """The cluster's secret (and TLS certificate and key), readable by the client's user only."""
    files = {"secret": info.secret_file}
    if info.tls:
        files |= {"cert.pem": info.cert_file, "key.pem": info.key_file}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo(Path(RUN_DIR).name)
        top.type, top.mode, top.uid, top.gid = tarfile.DIRTYPE, 0o700, CLIENT_UID, CLIENT_UID
        tar.addfile(top)
        for fname, path in files.items():
            if path is None or not Path(path).is_file():
                raise UserError(f"cluster {info.name}: its {fname} file is missing on this host")
            data = Path(path).read_bytes()
            ti = tarfile.TarInfo(f"{top.name}/{fname}")
            ti.size, ti.mode, ti.uid, ti.gid = len(data), 0o400, CLIENT_UID, CLIENT_UID
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _copy_out(container, src: str, dest: Path) -> None:
    """Copy one file out of the container to dest, atomically (temp file + rename)."""
    stream, _stat = container.get_archive(src)
    raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = next(m for m in tar.getmembers() if m.isfile())
        fh = tar.extractfile(member)
        if fh is None:
            raise UserError(f"cannot read {src} from the solve container")
        data = fh.read()
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(
        dir=dest.parent if str(dest.parent) else ".", prefix=f".{dest.name}."
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _tail(container, lines: int = 3) -> str:
    """': <its last stderr lines>', or '' when it printed none."""
    try:
        text = container.logs(stdout=False, stderr=True, tail=lines).decode(errors="replace")
    except Exception:  # noqa: BLE001 -- already gone
        return ""
    tail = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return f": {tail}" if tail else ""
