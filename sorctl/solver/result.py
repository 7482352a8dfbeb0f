"""The outcome of a solve, local or distributed, and its JSON-ready report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REASONS = ("rtol", "atol", "maxiter", "diverged", "interrupted")


@dataclass
class SolveResult:
    x: np.ndarray
    converged: bool
    reason: str  # one of REASONS
    iterations: int  # sweeps done when the last residual was measured (x is exactly that iterate)
    residuals: list[float]  # relative residual ||b - A x|| / ||b||, one per check
    omega: float
    omega_source: str  # 'user' | 'estimated'
    n: int
    nnz: int
    time_s: float
    timings: dict[str, float] = field(default_factory=dict)
    backend: str = "local"  # 'local' | 'cluster:<name>'
    method: str = "sor"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def relative_residual(self) -> float:
        return self.residuals[-1] if self.residuals else math.nan

    def to_report(self) -> dict[str, Any]:
        """Everything but x, as plain JSON types (NaN/Inf become None: JSON has no such numbers)."""
        report: dict[str, Any] = {
            "converged": bool(self.converged),
            "reason": self.reason,
            "iterations": int(self.iterations),
            "relative_residual": _num(self.relative_residual),
            "omega": _num(self.omega),
            "omega_source": self.omega_source,
            "n": int(self.n),
            "nnz": int(self.nnz),
            "time_s": _num(self.time_s),
            "backend": self.backend,
            "method": self.method,
            "timings": {k: _num(v) for k, v in self.timings.items()},
            "residuals": [_num(r) for r in self.residuals],
        }
        report.update(_jsonable(self.extra))
        return report


def _num(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _num(float(obj))
    return obj
