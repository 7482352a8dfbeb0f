"""Distributed SOR against the local sweep, on this machine, in one run (prints ratios; not a test).

For 2-D Poisson 2048^2 (n = 4.2M) and 3-D Poisson 128^3 (--quick: 256^2 and 32^3):
- seconds per outer iteration on a cluster of 1, 2 and 4 nodes (1 CPU each), from a fixed number
  of iterations, split into compute (the slowest block job of each round) and dispy overhead
  (the rest of each round: submit, fork, pickling, network, result);
- the local lexicographic sweep (sorctl.solver.kernels) on the same matrix in the same process;
- with --to-solution, time to rtol 1e-6 on the cluster (fastest node count) and locally.

Needs a Docker engine and the images (`sorctl images build`); brings up its own cluster
`dtbench-<random>` and always removes it. Run it when nobody else uses the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sorctl.api as sorctl_api  # noqa: E402
from sorctl.options import SolveOptions  # noqa: E402
from sorctl.solver import gallery  # noqa: E402
from sorctl.solver.io import System  # noqa: E402
from sorctl.solver.kernels import make_sweeper  # noqa: E402

SORCTL = str(Path(sys.executable).with_name("sorctl"))


def sorctl(*args: str) -> None:
    subprocess.run([SORCTL, *args], check=True, stdout=subprocess.DEVNULL)


def local_sweep_s(A: sp.csr_matrix, b: np.ndarray, omega: float, repeats: int) -> float:
    sweep = make_sweeper(A, omega, "sor")
    x = np.zeros_like(b)
    sweep(b, x, 1)  # compile / warm caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sweep(b, x, 1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def omega_opt(h: float) -> float:
    return 2.0 / (1.0 + np.sin(np.pi * h))


def cluster_run(name: str, A, b, omega: float, iters: int, rtol: float = 0.0):
    cluster = sorctl_api.Cluster(name)
    options = SolveOptions(
        omega=omega, rtol=rtol, maxiter=iters, check_every=iters if rtol == 0.0 else None
    )
    t0 = time.perf_counter()
    res = cluster.solve_system(System(A, b, None, "bench"), options)
    return res, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (256^2, 32^3)")
    ap.add_argument("--iters", type=int, default=None, help="outer iterations per timing")
    ap.add_argument("--nodes", default="1,2,4")
    ap.add_argument("--m2d", type=int, default=None, help="2-D grid side (overrides the size)")
    ap.add_argument("--m3d", type=int, default=None, help="3-D grid side (overrides the size)")
    ap.add_argument("--to-solution", action="store_true", help="also time a solve to rtol 1e-6")
    a = ap.parse_args()
    sizes = [("poisson2d", 256, 2), ("poisson3d", 32, 3)] if a.quick else [
        ("poisson2d", 2048, 2), ("poisson3d", 128, 3)]  # fmt: skip
    if a.m2d or a.m3d:
        sizes = [("poisson2d", a.m2d or sizes[0][1], 2), ("poisson3d", a.m3d or sizes[1][1], 3)]
    iters = a.iters or (10 if a.quick else 20)
    counts = [int(c) for c in a.nodes.split(",")]
    name = f"dtbench-{secrets.token_hex(2)}"
    # Nodes share this machine's cores: other load makes parallel rounds run one after another.
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    try:
        for k, nodes in enumerate(counts):
            sorctl("up" if k == 0 else "scale", "--nodes", str(nodes), "--name", name)
            for label, m, dim in sizes:
                A = (gallery.poisson2d if dim == 2 else gallery.poisson3d)(m)[0]
                b = np.ones(A.shape[0])
                omega = omega_opt(1.0 / (m + 1))
                res, wall = cluster_run(name, A, b, omega, iters)
                it = res.iterations
                # sweep rounds only (the residual checks and the final gather are apart)
                per_iter = (res.extra["compute_s"] + res.extra["comm_s"]) / it
                rows.append({
                    "system": f"{label} {m}^{dim}", "n": A.shape[0], "nodes": nodes,
                    "s_per_iter": per_iter, "compute_per_iter": res.extra["compute_s"] / it,
                    "overhead_per_iter": res.extra["comm_s"] / it, "load_s": res.timings["load_s"],
                    "wall_s": wall, "blocks": res.extra["blocks"], "colours": res.extra["colours"],
                    "bytes_per_iter": res.extra["bytes_per_iteration"],
                })  # fmt: skip
                print(f"  {rows[-1]}", file=sys.stderr)
                print(f"  workers: {res.extra['workers']}", file=sys.stderr)
        local = {}
        for label, m, dim in sizes:
            A = (gallery.poisson2d if dim == 2 else gallery.poisson3d)(m)[0]
            local[f"{label} {m}^{dim}"] = local_sweep_s(A, np.ones(A.shape[0]), 1.9, 5)
        head = (
            "system",
            "nodes",
            "s/iter",
            "compute",
            "overhead",
            "ovh %",
            "vs 1 node",
            "vs local",
        )
        print(f"{head[0]:<16} " + " ".join(f"{h:>9}" for h in head[1:]) + "  blocks colours")
        for r in rows:
            one = next(x for x in rows if x["system"] == r["system"] and x["nodes"] == counts[0])
            print(
                f"{r['system']:<16} {r['nodes']:>9} {r['s_per_iter']:>9.4f} "
                f"{r['compute_per_iter']:>9.4f} {r['overhead_per_iter']:>9.4f} "
                f"{100 * r['overhead_per_iter'] / r['s_per_iter']:>9.1f} "
                f"{one['s_per_iter'] / r['s_per_iter']:>8.2f}x "
                f"{local[r['system']] / r['s_per_iter']:>8.2f}x  {r['blocks']:>6} {r['colours']:>7}"
            )
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
        for s, t in local.items():
            print(f"local sweep {s}: {t:.4f} s")
        print("'vs 1 node': speed-up per outer iteration over the 1-node cluster; 'vs local':")
        print("local sweep time / distributed iteration time (> 1: the cluster is faster).")
        if a.to_solution:
            from sorctl import solve as local_solve

            best = min(rows, key=lambda r: r["s_per_iter"])["nodes"]
            sorctl("scale", "--nodes", str(best), "--name", name)
            for label, m, dim in sizes:
                A = (gallery.poisson2d if dim == 2 else gallery.poisson3d)(m)[0]
                b = np.ones(A.shape[0])
                omega = omega_opt(1.0 / (m + 1))
                res, wall = cluster_run(name, A, b, omega, 100000, rtol=1e-6)
                t0 = time.perf_counter()
                loc = local_solve(A, b, omega=omega, rtol=1e-6, maxiter=100000)
                t_local = time.perf_counter() - t0
                print(f"to 1e-6 {label} {m}^{dim}: cluster ({best} nodes) {res.time_s:.1f} s "
                      f"({res.iterations} it, wall {wall:.1f} s), local {t_local:.1f} s "
                      f"({loc.iterations} it): ratio {res.time_s / t_local:.2f}")  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            sorctl("down", "--name", name)


if __name__ == "__main__":
    main()
