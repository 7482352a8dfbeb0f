"""One options object for a solve, with every default defined here once.

The CLI builds it from flags, `sorctl.solve` from keyword arguments; both drivers take it, and a
cluster solve carries it into the client container as JSON (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sorctl.errors import InputError

# every method the local driver runs; cg-ssor: CG preconditioned by SSOR (sorctl.solver.cg_ssor)
METHODS = ("sor", "ssor", "multicolor", "cg-ssor")
CLUSTER_METHODS = ("sor", "ssor", "cg-ssor")  # the cluster already runs a block multicolour order


@dataclass(frozen=True)
class SolveOptions:
    method: str = "sor"
    omega: float | None = None  # None: estimated from A (Young's formula; cg-ssor: its own rule)
    rtol: float = 1e-8  # stop when ||b - A x|| <= max(rtol ||b||, atol)
    atol: float = 0.0
    maxiter: int = 10000  # sweeps (outer iterations on a cluster; CG iterations for cg-ssor)
    check_every: int | None = None  # None: the adaptive spacing of sorctl.solver.monitor
    # On a cluster only:
    inner_sweeps: int = 1  # SOR sweeps per block and outer iteration
    blocks: int | None = None  # row blocks; None: two per node CPU
    checkpoint_every_s: float = 30.0
    ready_timeout_s: float = 60.0  # waiting for the scheduler and the nodes' workers
    job_timeout_s: float = 600.0  # one request to a worker, before its node counts as lost

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """InputError naming the first bad option."""
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.omega is not None and not 0.0 < self.omega < 2.0:
            raise InputError(f"omega must lie in (0, 2), got {self.omega}")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise InputError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("maxiter", "inner_sweeps"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("check_every", "blocks"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be at least 1, got {value}")
        if not self.checkpoint_every_s >= 0:  # 0: after every round
            raise InputError(f"checkpoint_every_s must be >= 0, got {self.checkpoint_every_s}")
        for name in ("ready_timeout_s", "job_timeout_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}")

    def with_(self, **changes: Any) -> SolveOptions:
        """A copy with `changes` (unknown names are an InputError)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise InputError(f"unknown solve option(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SolveOptions:
        return cls().with_(**data)

    def for_cluster(self) -> SolveOptions:
        """self, or InputError when the method runs locally only."""
        if self.method not in CLUSTER_METHODS:
            raise InputError(
                f"method {self.method} runs locally only (use --local); on a cluster: "
                + ", ".join(CLUSTER_METHODS)
            )
        if self.method == "cg-ssor" and self.inner_sweeps != 1:
            # K sweeps per block and pass make a preconditioner that need not be symmetric
            raise InputError("cg-ssor on a cluster takes --inner-sweeps 1 only")
        return self


DEFAULTS = SolveOptions()
