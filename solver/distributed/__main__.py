"""`python -m solver.distributed`: one distributed solve, run inside the client container.

The host CLI validates the user's system, writes it with solver.io.save_system, puts it into a
client container on the cluster's network and runs this. Progress, events and checkpoints go to
stdout as JSON lines (solver.distributed.wire), human-readable logs to stderr; the result is a
solution file (solver.io.save_solution). Exit codes as the CLI's: 0 converged, 3 not converged,
2 bad input, 1 cluster failure, 130 interrupted (no result file then).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

from solver.distributed import wire


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m solver.distributed")
    p.add_argument("--system", required=True, help="system .npz (solver.io.save_system)")
    p.add_argument("--out", required=True, help="solution file to write")
    p.add_argument("--scheduler", required=True, help="dispyscheduler address")
    p.add_argument("--port", type=int, default=9702, help="scheduler's client port")
    p.add_argument(
        "--host", default=None, help="own address (default: the one facing the scheduler)"
    )
    p.add_argument("--secret-file", default="/run/sorctl/secret")
    p.add_argument("--certfile", default=None)
    p.add_argument("--keyfile", default=None)
    p.add_argument("--nodes", type=int, default=1, help="nodes to wait for before starting")
    p.add_argument("--ready-timeout", type=float, default=60.0)
    p.add_argument("--omega", type=float, default=None)
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=0.0)
    p.add_argument("--maxiter", type=int, default=10000)
    p.add_argument("--method", default="sor")
    p.add_argument("--inner-sweeps", type=int, default=1)
    p.add_argument("--blocks", type=int, default=None)
    p.add_argument("--check-every", type=int, default=None, help="default: as the local solver")
    p.add_argument("--checkpoint", default=None, help="file to keep the last gathered x in")
    p.add_argument("--checkpoint-every", type=float, default=30.0, help="seconds")
    p.add_argument("--job-timeout", type=float, default=600.0)
    p.add_argument("--backend", default="cluster")
    return p.parse_args(argv)


def _own_address(scheduler: str, port: int) -> str:
    """The local address the kernel uses to reach the scheduler (right even behind routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((scheduler, port))  # UDP connect: picks a route, sends nothing
        return s.getsockname()[0]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from solver import io
    from solver.distributed.driver import estimate_omega_in_background, solve
    from solver.distributed.executor import ClusterFailed
    from solver.errors import InputError

    a = _args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    executor = None
    try:
        system = io.load_system(a.system, allow_nonsymmetric=True)
        secret_path = Path(a.secret_file)
        secret = secret_path.read_text().strip() if secret_path.is_file() else ""
        # estimate omega while dispy connects and the workers start (it needs only A); in a
        # process of its own, forked now, before dispy starts its threads
        estimate = (
            estimate_omega_in_background(system.A, own_process=True) if a.omega is None else None
        )
        host = a.host or _own_address(a.scheduler, a.port)
        wire.log(f"connecting to the scheduler at {a.scheduler}:{a.port} from {host}")
        from solver.distributed.dispy_executor import DispyExecutor

        executor = DispyExecutor(
            a.scheduler,
            host=host,
            secret=secret,
            certfile=a.certfile,
            keyfile=a.keyfile,
            client_port=a.port,
            want_nodes=a.nodes,
            ready_timeout=a.ready_timeout,
            log=wire.log,
        )
        wire.emit("ready", nodes=executor.nodes())

        written: list[Path] = []

        def checkpoint(x, iteration, residual):
            # A new name each time, and the one before kept: the host may still be copying it.
            path = Path(a.checkpoint).with_name(f"{Path(a.checkpoint).stem}-{iteration}.npz")
            report = {"checkpoint": True, "iterations": iteration, "relative_residual": residual}
            io.save_solution(path, x, [residual], report)
            wire.emit("checkpoint", path=str(path), iteration=iteration, residual=residual)
            written.append(path)
            while len(written) > 2:
                written.pop(0).unlink(missing_ok=True)

        result = solve(
            system.A,
            system.b,
            executor,
            x0=system.x0,
            omega=a.omega,
            omega_estimate=estimate,
            rtol=a.rtol,
            atol=a.atol,
            maxiter=a.maxiter,
            method=a.method,
            inner_sweeps=a.inner_sweeps,
            nblocks=a.blocks,
            check_every=a.check_every,
            callback=lambda it, r: wire.emit("progress", iteration=it, residual=r),
            checkpoint=checkpoint if a.checkpoint else None,
            checkpoint_every_s=a.checkpoint_every,
            on_event=lambda ev: wire.emit("event", **ev),
            job_timeout=a.job_timeout,
            backend=a.backend,
        )
        io.save_solution(a.out, result.x, result.residuals, result.to_report())
        wire.emit("done", path=a.out, converged=result.converged, reason=result.reason)
        code = 0 if result.converged else 3
    except KeyboardInterrupt:
        wire.emit("error", message="interrupted", code=130)
        code = 130
    except InputError as exc:
        wire.emit("error", message=str(exc), code=2)
        code = 2
    except ClusterFailed as exc:
        wire.emit("error", message=str(exc), code=1)
        code = 1
    except Exception as exc:  # noqa: BLE001 -- one line for the host, never a traceback there
        wire.emit("error", message=f"{type(exc).__name__}: {exc}", code=1)
        code = 1
    if executor is not None:
        executor.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # dispy's threads are not daemons: do not wait for them


if __name__ == "__main__":
    main()
