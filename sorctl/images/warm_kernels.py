"""Build-time warm-up: run the solver's numba kernels once on tiny systems so their compiled code
lands in NUMBA_CACHE_DIR and jobs on a node do not compile on first use.

Calls the public sweeps of `sorctl.solver.kernels` (CSR and dense, float64), then the `warm()`
of each module in WARM_HOOKS (the distributed node code: its block kernels take read-only int32
maps, other signatures than the public sweeps'). What this solver version lacks is reported and
skipped."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

SWEEPS = ("sor_sweeps", "ssor_sweeps", "multicolor_sweeps")
WARM_HOOKS = ("sorctl.distributed.node", "sorctl.distributed.partition")


def tiny_system(n: int = 6) -> tuple[sp.csr_matrix, np.ndarray]:
    """A 1-D Poisson matrix: symmetric positive definite, sorted CSR indices, int32 index arrays."""
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return A, np.ones(n)


def main() -> int:
    if importlib.util.find_spec("sorctl.solver.kernels") is None:
        print(
            "warm_kernels: sorctl.solver.kernels does not exist yet; nothing to warm",
            file=sys.stderr,
        )
        return 0
    from sorctl.solver import kernels

    A, b = tiny_system()
    start = time.perf_counter()
    warmed = []
    for name in SWEEPS:
        fn = getattr(kernels, name, None)
        if fn is None:
            print(f"warm_kernels: sorctl.solver.kernels.{name} missing; skipped", file=sys.stderr)
            continue
        for matrix in (A, A.toarray()):
            fn(matrix, b, np.zeros_like(b), 1.2, sweeps=1)
        warmed.append(name)
    for module_name in WARM_HOOKS:
        if importlib.util.find_spec(module_name) is None:
            print(f"warm_kernels: {module_name} missing; skipped", file=sys.stderr)
            continue
        importlib.import_module(module_name).warm()
        warmed.append(f"{module_name}.warm")
    cache = os.environ.get("NUMBA_CACHE_DIR", "")
    files = sum(len(f) for _, _, f in os.walk(cache)) if cache else 0
    print(
        f"warm_kernels: {', '.join(warmed) or 'nothing'} compiled in "
        f"{time.perf_counter() - start:.1f} s; {files} files in {cache or '(no cache dir)'}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
