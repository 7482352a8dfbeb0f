"""What the client container says to the host: JSON lines on stdout, and the result file.

Line types: ready {nodes}, progress {iteration, residual}, event {event, t, ...}, checkpoint
{path, iteration, residual}, done {path, converged, reason}, error {message, code}.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np

from sorctl.solver.result import SolveResult

PREFIX = "sorctl:"  # marks our lines among anything else a library might print
# The client container's exit codes (the host turns them back into outcomes).
CONVERGED, FAILED, BAD_INPUT, NOT_CONVERGED, INTERRUPTED = 0, 1, 2, 3, 130
LOG_PREFIX = "sorctl-client:"  # human-readable log lines (stderr), forwarded by the host


def emit(kind: str, **fields: Any) -> None:
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fields.items()
    }
    sys.stdout.write(PREFIX + json.dumps({"type": kind, **clean}, default=str) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    sys.stderr.write(f"{LOG_PREFIX} {message}\n")
    sys.stderr.flush()


def parse(line: str) -> dict[str, Any] | None:
    """A message from one output line, or None for anything that is not one of ours."""
    if not line.startswith(PREFIX):
        return None
    try:
        msg = json.loads(line[len(PREFIX) :])
    except ValueError:
        return None
    return msg if isinstance(msg, dict) and "type" in msg else None


# Report keys that are SolveResult fields; everything else came from `extra`.
_FIELDS = (
    "converged",
    "reason",
    "iterations",
    "omega",
    "omega_source",
    "n",
    "nnz",
    "time_s",
    "backend",
    "method",
    "timings",
)


def read_result(path) -> SolveResult:
    """The SolveResult a container wrote with sorctl.solver.io.save_solution (no pickle)."""
    with np.load(path, allow_pickle=False) as f:
        x = np.array(f["x"], dtype=np.float64)
        residuals = [float(r) for r in f["residuals"]]
        report = json.loads(str(f["report"]))
    extra = {
        k: v for k, v in report.items() if k not in _FIELDS + ("relative_residual", "residuals")
    }
    return SolveResult(
        x=x,
        converged=bool(report["converged"]),
        reason=report["reason"],
        iterations=int(report["iterations"]),
        residuals=residuals,
        omega=float(report["omega"]),
        omega_source=report["omega_source"],
        n=int(report["n"]),
        nnz=int(report["nnz"]),
        time_s=float(report["time_s"]),
        timings=dict(report.get("timings") or {}),
        backend=report.get("backend", "cluster"),
        method=report.get("method", "sor"),
        extra=extra,
    )
