"""`sorctl solve --method cg-ssor` end to end on a 2-node cluster against the same command
locally (prints times and ratios; not a test).

For 2-D Poisson 2048^2 and 3-D Poisson 128^3 (--quick: 512^2 and 48^3), to rtol 1e-6: the wall
time of `sorctl solve FILE --method M --json` with `--local` and with `--cluster cg-bench` (a
cluster of 2 nodes of 1 CPU each that this script brings up and always removes), runs
alternated, medians printed with the iterations and the solver's own time_s. speedup = local /
cluster wall time (target >= 1.5 for cg-ssor). Also per run: the omega estimate's seconds (local:
the estimate on the whole matrix; cluster: the estimate on the workers' rows once they are
wired), the iterating phase's seconds and milliseconds per iteration (residual checks
included), and that phase's speedup; the time from the command to the first iteration (wall
less the iterating phase) and its gap, cluster minus local (target <= 1.5 s), also for the
first run alone (the later ones find the rows kept on the nodes).

    .venv/bin/python bench/bench_cg_cluster.py [--quick] [--runs 2] [--methods cg-ssor,sor]

Needs a Docker engine and the images (`sorctl images build`). Run it when the cores are idle.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLUSTER = "cg-bench"
RTOL = "1e-6"


def sorctl(*args: str) -> tuple[float, dict]:
    """Wall seconds and the JSON report of one `sorctl` command (exit on failure)."""
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", *args], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t0
    if res.returncode not in (0, 3):  # 3: not converged, still a measurement
        sys.exit(f"sorctl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return elapsed, json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="512^2 and 48^3: a smoke run")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--methods", default="cg-ssor")
    args = ap.parse_args()
    cases = (
        [("2-D 512^2", "poisson2d", 512), ("3-D 48^3", "poisson3d", 48)]
        if args.quick
        else [("2-D 2048^2", "poisson2d", 2048), ("3-D 128^3", "poisson3d", 128)]
    )
    tmp = Path(tempfile.mkdtemp(prefix="sorctl-bench-"))
    sorctl("up", "--nodes", "2", "--cpus-per-node", "1", "--name", CLUSTER)
    try:
        print(f"to rtol {RTOL}; cluster {CLUSTER}: 2 nodes x 1 CPU; medians of {args.runs} runs")
        print(f"{'system':12} {'method':8} {'where':8} {'wall s':>8} {'solve s':>8} "
              f"{'its':>6} {'omega':>7} {'omega s':>7} {'iter s':>7} {'ms/it':>6} {'start s':>7}  "
              "speedup local/cluster: wall, per iteration; start gap cluster - local")  # fmt: skip
        for name, kind, size in cases:
            path = tmp / f"{kind}-{size}.npz"
            sorctl("gen", kind, "--size", str(size), "-o", str(path))
            for method in args.methods.split(","):
                walls: dict[str, list[float]] = {"local": [], "cluster": []}
                # from the command to the first iteration: the wall time less the iterating
                starts: dict[str, list[float]] = {"local": [], "cluster": []}
                last: dict[str, dict] = {}
                for _ in range(args.runs):
                    for where, flags in (
                        ("local", ["--local"]),
                        ("cluster", ["--cluster", CLUSTER]),
                    ):
                        base = ["solve", str(path), "--method", method, "--rtol", RTOL, "--json"]
                        wall, report = sorctl(*base, *flags)
                        walls[where].append(wall)
                        starts[where].append(wall - report.get("timings", {}).get("iterate_s", 0))
                        last[where] = report
                med = {w: statistics.median(v) for w, v in walls.items()}
                start = {w: statistics.median(v) for w, v in starts.items()}
                per_it = {w: _per_iteration(last[w]) for w in ("local", "cluster")}
                for where in ("local", "cluster"):
                    rep = last[where]
                    t = rep.get("timings", {})
                    omega_s = t.get("omega_s", 0.0)
                    tail = (
                        f"  {med['local'] / med['cluster']:.2f}, "
                        f"{per_it['local'] / per_it['cluster']:.2f}; "
                        f"{start['cluster'] - start['local']:+.2f} s (first run "
                        f"{starts['cluster'][0] - starts['local'][0]:+.2f} s)"
                        if where == "cluster"
                        else ""
                    )
                    print(f"{name:12} {method:8} {where:8} {med[where]:8.2f} "
                          f"{rep['time_s']:8.2f} {rep['iterations']:6d} {rep['omega']:7.4f} "
                          f"{omega_s:7.2f} {t.get('iterate_s', 0.0):7.2f} "
                          f"{1e3 * per_it[where]:6.1f} {start[where]:7.2f}{tail}",
                          flush=True)  # fmt: skip
    finally:
        subprocess.run([sys.executable, "-m", "sorctl.cli.main", "down", "--name", CLUSTER],
                       capture_output=True)  # fmt: skip
        for f in tmp.glob("*.npz"):
            f.unlink()
        tmp.rmdir()


def _per_iteration(report: dict) -> float:
    """Seconds per iteration of the last run: its iterating phase (with its residual checks)
    over its iterations."""
    t = report.get("timings", {})
    return (t.get("iterate_s", 0.0) + t.get("checks_s", 0.0)) / max(report["iterations"], 1)


if __name__ == "__main__":
    main()
