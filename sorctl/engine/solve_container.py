"""A solve on a running cluster: the host side, which runs it in a client container.

dispy discovers by broadcast, so the dispy client never runs on the host: the solve runs in a
client container (image sorctl-client) on the cluster's client network, with the routes that
reach remote subnets. The host puts the validated system, the job document (options and the
scheduler's address, sorctl.distributed.job) and the cluster's secret into the container,
follows its JSON progress lines, copies checkpoints and the result out, and always removes the
container (Ctrl-C included; the scheduler and nodes stay up and usable).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker

from sorctl.distributed import wire
from sorctl.distributed.job import SolveJob
from sorctl.engine.apply import run_dir_tar
from sorctl.engine.connect import connect
from sorctl.engine.images import image_ref, require_images
from sorctl.errors import ClusterError, InputError
from sorctl.names import LABEL_CLUSTER, LABEL_ROLE, RUN_DIR, RUN_UID, SOLVE_DIR
from sorctl.options import SolveOptions
from sorctl.solver import io as sio
from sorctl.solver.generated import Grid
from sorctl.solver.npz_check import SystemFile, copy_with
from sorctl.solver.result import SolveResult

STOP_GRACE_S = 20  # after Ctrl-C: time for the client to cancel its jobs and close


def run(
    info,
    system,
    options: SolveOptions,
    *,
    checkpoint: str | os.PathLike | None = None,
    progress: Callable[[int, float], None] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
    client=None,
) -> SolveResult:
    """Solve `system` (a validated sorctl.solver.io.System, a checked SystemFile, or a grid the
    nodes make, sorctl.solver.generated.Grid) on cluster `info` (a ClusterInfo).
    client: the engine to run the client container on (default: the local one; a cluster
    across hosts passes its scheduler host's, and info.network "host"). It is closed here.

    Raises ClusterError (cluster failures), InputError (the container refused the input),
    KeyboardInterrupt (Ctrl-C: nothing written but the checkpoint, if asked for).
    """
    options = options.for_cluster()
    client = client or connect()
    require_images(client, ["client"])
    running = sum(1 for c in info.nodes if c.state == "running")
    job = SolveJob(
        scheduler=info.scheduler_address,
        options=options,
        port=info.scheduler_port,
        nodes=running,
        cpus=_expected_cpus(info, running),
        backend=f"cluster:{info.name}",
        tls=info.tls,  # dispy's TLS model: the shared certificate is also the CA
        checkpoint=checkpoint is not None,
        system_key=_file_identity(system),
        grid=system.to_dict() if isinstance(system, Grid) else None,
    )
    container = None
    sys_bytes = 0  # what the host's link carries of A: the system file
    with tempfile.TemporaryDirectory(prefix="sorctl-solve-") as tmp:
        try:
            container = _client_container(client, info)
            _put(container, str(Path(SOLVE_DIR).parent), _job_tar(job))
            _put(container, str(Path(RUN_DIR).parent), _material_tar(info))
            # started before the system is in: dispy and the workers start while it is copied
            container.start()
            sys_path = _system_file(system, Path(tmp))
            if sys_path is not None:
                sys_bytes = sys_path.stat().st_size
                _put(container, SOLVE_DIR, _system_tar(sys_path, job))
            last = _follow(container, progress, on_event, log, checkpoint)
            return _with_a_bytes(_outcome(container, job, Path(tmp), last, info.name), sys_bytes)
        except KeyboardInterrupt:
            if container is None:
                raise
            _stop(container)
            return _with_a_bytes(_interrupted(container, job, Path(tmp)), sys_bytes)
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.remove(force=True, v=True)  # its volume too
            client.close()


def _client_container(client, info):
    """The solve's client container (created, not started) on the cluster's client network,
    with the routes to remote subnets when it has some."""
    return client.containers.create(
        image_ref("client"),
        command=["python", "-m", "sorctl.distributed", f"{SOLVE_DIR}/job.json"],
        name=f"{info.name}-solve-{secrets.token_hex(3)}",
        environment=info.client_env(),
        labels={LABEL_CLUSTER: info.name, LABEL_ROLE: "client"},
        network=info.network,
        cap_add=["NET_ADMIN"] if info.routes else None,
        # the system file on a volume of its own, not the container's layer (a copy-on-write
        # filesystem, FUSE on some engines, reads it several times slower)
        mounts=[docker.types.Mount(SOLVE_DIR, None, type="volume")],
        detach=True,
    )


def _outcome(container, job: SolveJob, tmp: Path, last: dict[str, Any] | None,
             cluster: str) -> SolveResult:  # fmt: skip
    """The result of a client that exited: its answer (converged or not, or interrupted), or
    the error it gave (InputError for input it refused)."""
    code = int(container.wait(timeout=60).get("StatusCode", 1))
    if code in (wire.CONVERGED, wire.NOT_CONVERGED):
        return _result(container, job, tmp)
    if code == wire.INTERRUPTED:
        return _interrupted(container, job, tmp)
    message = (last or {}).get("message") or (
        f"the solve container exited with code {code}" + _tail(container)
    )
    error = InputError if code == wire.BAD_INPUT else ClusterError
    raise error(f"solve on cluster {cluster}: {message}")


def _system_file(system, tmp: Path) -> Path | None:
    """The .npz to send: the user's file as it is when it holds the system, else a copy; None
    for a grid system (the nodes make its rows)."""
    if isinstance(system, Grid):
        return None
    if isinstance(system, SystemFile):
        if system.as_is:
            return Path(system.file)
        copy_with(system.file, tmp / "system.npz", b=system.b, x0=system.x0)
        return tmp / "system.npz"
    if system.file is not None:
        return Path(system.file)
    sio.save_system(tmp / "system.npz", system.A, system.b, system.x0)
    return tmp / "system.npz"


def _expected_cpus(info, running: int) -> int:
    """The CPUs the solve should find: a cluster across hosts counts them (its scheduler's
    table), one on an engine has its shape's per node; 0 when neither is known."""
    counted = getattr(info, "cpus", 0)
    if counted:
        return int(counted)
    shape = getattr(info, "shape", None)
    return running * shape.cpus_per_node if shape is not None else 0


def _file_identity(system) -> str:
    """The user's file as the nodes' kept blocks name it (its path, size and modification
    time; b and x0 are not part of it), or "" for a system that is not a file."""
    if isinstance(system, Grid):
        return ""  # its nodes make its rows again faster than they read them back
    name = system.source if isinstance(system, SystemFile) else system.file
    if not name:
        return ""
    try:
        st = Path(name).stat()
    except OSError:
        return ""
    return f"{Path(name).resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _with_a_bytes(result: SolveResult, system_bytes: int) -> SolveResult:
    """The report's a_bytes with the host's link: the system file put into the container."""
    to_workers = result.extra.get("a_bytes", {}).get("client_to_workers", {})
    result.extra["a_bytes"] = {
        "host_to_client": system_bytes,
        "client_to_workers": to_workers,
        "total": system_bytes + sum(to_workers.values()),
    }
    return result


def _result(container, job: SolveJob, tmp: Path) -> SolveResult:
    out = tmp / "result.npz"
    _copy_out(container, str(job.result_path), out)
    return wire.read_result(out)


def _interrupted(container, job: SolveJob, tmp: Path) -> SolveResult:
    """Ctrl-C: the solve's 'interrupted' result, as a local solve gives one (or its answer, if
    it finished meanwhile); KeyboardInterrupt when it was stopped before the solve was under
    way, with no result to give."""
    try:
        return _result(container, job, tmp)
    except Exception:  # noqa: BLE001 -- no result file: stopped while starting
        raise KeyboardInterrupt from None


def _follow(container, progress, on_event, log, checkpoint) -> dict[str, Any] | None:
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


def _put(container, parent: str, data: bytes | Iterator[bytes]) -> None:
    if not container.put_archive(parent, data):
        raise ClusterError(f"cannot copy files into the solve container {container.name}")


FILE_CHUNK = 1 << 20


def _job_tar(job: SolveJob) -> bytes:
    """SOLVE_DIR with the job document, the client's user's alone."""
    top = tarfile.TarInfo(Path(SOLVE_DIR).name)
    top.type, top.mode, top.uid, top.gid = tarfile.DIRTYPE, 0o700, RUN_UID, RUN_UID
    doc = job.to_json().encode()
    ti = tarfile.TarInfo(f"{top.name}/job.json")
    ti.size, ti.mode, ti.uid, ti.gid = len(doc), 0o600, RUN_UID, RUN_UID
    end = b"\0" * (2 * tarfile.BLOCKSIZE)
    return top.tobuf(tarfile.PAX_FORMAT) + ti.tobuf(tarfile.PAX_FORMAT) + _padded(doc) + end


def _system_tar(system_file: Path, job: SolveJob) -> Iterator[bytes]:
    """The system file, then its ready mark (the client waits for the mark: the file is whole
    once it is there), as a tar stream made as it is sent: never in memory whole."""
    with open(system_file, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        info = tarfile.TarInfo(job.system_path.name)
        info.size, info.mode, info.uid, info.gid = size, 0o600, RUN_UID, RUN_UID
        yield info.tobuf(tarfile.PAX_FORMAT)
        left = size
        while left:
            chunk = fh.read(min(FILE_CHUNK, left))
            if not chunk:
                raise InputError(f"{system_file}: the file shrank while it was being sent")
            left -= len(chunk)
            yield chunk
    mark = tarfile.TarInfo(job.system_ready_path.name)
    mark.mode, mark.uid, mark.gid = 0o600, RUN_UID, RUN_UID
    padding = b"\0" * (-size % tarfile.BLOCKSIZE)
    yield padding + mark.tobuf(tarfile.PAX_FORMAT) + b"\0" * (2 * tarfile.BLOCKSIZE)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def _material_tar(info) -> bytes:
    """The cluster's secret (and TLS certificate and key), readable by the client's user only."""
    paths = {"secret": info.secret_file}
    if info.tls:
        paths |= {"cert.pem": info.cert_file, "key.pem": info.key_file}
    files = {}
    for fname, path in paths.items():
        if path is None or not Path(path).is_file():
            raise ClusterError(f"cluster {info.name}: its {fname} file is missing on this host")
        files[fname] = Path(path).read_bytes()
    return run_dir_tar(files)


def _copy_out(container, src: str, dest: Path) -> None:
    """Copy one file out of the container to dest, atomically (temp file + rename)."""
    stream, _stat = container.get_archive(src)
    raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = next(m for m in tar.getmembers() if m.isfile())
        fh = tar.extractfile(member)
        if fh is None:
            raise ClusterError(f"cannot read {src} from the solve container")
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
