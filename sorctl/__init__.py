"""sorctl: a dispy cluster on Docker in one command, and a distributed SOR solver that runs on it.

    import sorctl
    res = sorctl.solve(A, b, rtol=1e-8)
    with sorctl.Cluster.up("lab", nodes=4, relay=True) as c:
        res = c.solve(A, b, rtol=1e-8)

Layers, each importing only those below it (checked by tests/unit/test_layers.py):
    cli       typer commands: flags in, calls to the API, answers and exit codes out
    dashboard the web page of `sorctl dashboard` (clusters through the API, solves through feeds)
    api       solve() and Cluster: the Python face of everything below
    engine    the Docker provider: the only code that calls the Docker SDK
    cluster   pure planning: topology plans, readiness parsing, the host's secret material
    distributed  the dispy side of a cluster solve (runs in the client container and nodes)
    solver    numerics: kernels, omega, files, the local driver (neither Docker nor dispy)
and beside them all: errors, names (labels, ports, paths), options (SolveOptions) and solvefeed
(each solve's progress file, which the dashboard follows).

The heavy parts load on first use, so `import sorctl` stays cheap (the node and client images
import it in every Python process to apply the dispy shims).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sorctl.errors import ClusterError, EngineError, ImageError, InputError, SorctlError

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterStatus",
    "EngineError",
    "HostsCluster",
    "ImageError",
    "InputError",
    "SolveOptions",
    "SolveResult",
    "SorctlError",
    "clusters",
    "load_system",
    "solve",
]

_LAZY = {
    "Cluster": "sorctl.api",
    "ClusterStatus": "sorctl.api",
    "HostsCluster": "sorctl.api",
    "clusters": "sorctl.api",
    "solve": "sorctl.api",
    "SolveOptions": "sorctl.options",
    "SolveResult": "sorctl.solver.result",
    "load_system": "sorctl.solver.io",
}

if TYPE_CHECKING:
    from sorctl.api import Cluster, ClusterStatus, HostsCluster, clusters, solve
    from sorctl.options import SolveOptions
    from sorctl.solver.io import load_system
    from sorctl.solver.result import SolveResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sorctl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
