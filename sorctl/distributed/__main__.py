"""`python -m sorctl.distributed [JOB_FILE]`: one distributed solve, run inside the client
container.

The host checks the user's system, puts a JSON job document (sorctl.distributed.job.SolveJob:
the solve's options and the scheduler's address) into a client container on the cluster's
network and starts this; the system file (or a copy with b or x0 replaced) follows, with a
ready mark, while this starts. The rows of A go from
the file to the nodes that own them, a window at a time (sorctl.distributed.rows); a grid
system's rows are made by the nodes themselves (the job names the grid, no file comes). Progress,
events and checkpoints go to stdout as JSON lines (sorctl.distributed.wire), human-readable
logs to stderr; the result is a solution file (sorctl.solver.io.save_solution). Exit codes as
the CLI's: 0 converged, 3 not converged, 2 bad input, 1 cluster failure, 130 interrupted (with
a result file when the solve itself was under way: reason 'interrupted', the last gathered x).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

from sorctl.distributed import wire
from sorctl.distributed.job import JOB_FILE
from sorctl.errors import ClusterError, InputError

SYSTEM_POLL_S = 0.02


def _own_address(scheduler: str, port: int) -> str:
    """The local address the kernel uses to reach the scheduler (right even behind routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((scheduler, port))  # UDP connect: picks a route, sends nothing
        return s.getsockname()[0]


def _wait_for(path: Path, what: str, timeout: float) -> None:
    """Until the host has put `path` in (it starts this container before it copies the system
    file in), or InputError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise InputError(f"{what} did not arrive within {timeout:.0f} s")
        time.sleep(SYSTEM_POLL_S)  # a file the host puts in: nothing to wait on but its name


def _open_system(job, timeout: float):
    """(row source, b, x0) of the job's system: the grid the nodes make, or the file read once
    the host has put it in (its row pointer and vectors; the rows stream later)."""
    from sorctl.distributed.rows import GridRows, RowSource, system_rows
    from sorctl.solver.generated import Grid

    source: RowSource
    if job.grid is not None:
        grid = GridRows(Grid.from_dict(job.grid))
        wire.log(f"{grid.grid.source}: each node makes its own rows")
        return grid, grid.b, None
    _wait_for(job.system_ready_path, job.system_path.name, timeout)
    source, b, x0, streamed = system_rows(job.system_path)
    if not streamed:
        wire.log(f"{job.system_path.name}: this layout is read whole, not streamed")
    return source, b, x0


def _beside(fn, *args):
    """fn(*args) in a thread; its result() raises what fn raised."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="beside")
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from sorctl.distributed.job import SolveJob

    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _interrupt)
    executor = None
    try:
        job_file = Path(argv[0] if argv else JOB_FILE)
        try:
            job = SolveJob.from_json(job_file.read_text())
        except OSError as exc:
            raise InputError(f"{job_file}: cannot read the solve job: {exc.strerror}") from None
        opts = job.options.for_cluster()
        # the host starts this container before it copies the file in: it arrives meanwhile
        opening = _beside(_open_system, job, opts.ready_timeout_s)
        from sorctl.distributed.dispy_executor import DispyExecutor
        from sorctl.distributed.driver import cut, solve
        from sorctl.distributed.file_pages import release_after_loading
        from sorctl.solver import io
        from sorctl.solver.peak_memory import cgroup_peak_bytes

        source, b, x0 = opening.result()  # a file it cannot read ends here, before dispy starts
        # the rows are cut for the CPUs the host expects while dispy starts (used if they come)
        pipelined = opts.method == "cg-ssor"
        cutting = _beside(cut, source, job.cpus, opts.blocks, None, pipelined) if job.cpus else None
        secret_path = Path(job.secret_file)
        secret = secret_path.read_text().strip() if secret_path.is_file() else ""
        host = job.host or _own_address(job.scheduler, job.port)
        wire.log(f"connecting to the scheduler at {job.scheduler}:{job.port} from {host}")

        executor = DispyExecutor(
            job.scheduler,
            host=host,
            secret=secret,
            certfile=job.cert_file if job.tls else None,
            keyfile=job.key_file if job.tls else None,
            client_port=job.port,
            want_nodes=job.nodes,
            ready_timeout=opts.ready_timeout_s,
            log=wire.log,
        )
        wire.emit("ready", nodes=executor.nodes())
        _beside(release_after_loading)  # what the imports read of the libraries: not kept

        written: list[Path] = []

        def checkpoint(x, iteration, residual):
            # A new name each time, and the one before kept: the host may still be copying it.
            base = job.checkpoint_path
            path = base.with_name(f"{base.stem}-{iteration}.npz")
            report = {"checkpoint": True, "iterations": iteration, "relative_residual": residual}
            io.save_solution(path, x, [residual], report)
            wire.emit("checkpoint", path=str(path), iteration=iteration, residual=residual)
            written.append(path)
            while len(written) > 2:
                written.pop(0).unlink(missing_ok=True)

        result = solve(
            source,
            b,
            executor,
            opts,
            x0=x0,
            callback=lambda it, r: wire.emit("progress", iteration=it, residual=r),
            checkpoint=checkpoint if job.checkpoint else None,
            on_event=lambda ev: wire.emit("event", **ev),
            backend=job.backend,
            keep=job.system_key,
            precut=cutting.result() if cutting is not None else None,
        )
        cgroup = cgroup_peak_bytes()  # the whole container's, before the result is written
        if cgroup is not None:  # beside the client's own peak, before the workers'
            memory = result.extra.get("memory", {})
            result.extra["memory"] = {"client": memory.get("client"), "client_cgroup": cgroup,
                                      **memory}  # fmt: skip
        # an interrupted solve has a result too (the last gathered x), as a local one has
        io.save_solution(job.result_path, result.x, result.residuals, result.to_report())
        wire.emit(
            "done", path=str(job.result_path), converged=result.converged, reason=result.reason
        )
        if result.reason == "interrupted":
            code = wire.INTERRUPTED
        else:
            code = wire.CONVERGED if result.converged else wire.NOT_CONVERGED
    except KeyboardInterrupt:
        code = wire.INTERRUPTED
        wire.emit("error", message="interrupted", code=code)
    except InputError as exc:
        code = wire.BAD_INPUT
        wire.emit("error", message=str(exc), code=code)
    except ClusterError as exc:
        code = wire.FAILED
        wire.emit("error", message=str(exc), code=code)
    except Exception as exc:  # noqa: BLE001 -- one line for the host, never a traceback there
        code = wire.FAILED
        wire.emit("error", message=f"{type(exc).__name__}: {exc}", code=code)
    if executor is not None:
        executor.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # dispy's threads are not daemons: do not wait for them


if __name__ == "__main__":
    main()
