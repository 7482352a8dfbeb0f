"""Time `sorctl up --nodes 4 --relay` until the scheduler counts every node, and `sorctl down`.

Targets (with the images present): up <= 15 s, down <= 5 s. Prints each run and the
ratio to the target (< 1.0 is within it). Usage: .venv/bin/python bench/bench_cluster.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

UP_TARGET_S = 15.0
DOWN_TARGET_S = 5.0


def sorctl(*args: str) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", *args], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"sorctl {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("SORCTL_HOME", tempfile.mkdtemp(prefix="sorctl-bench-"))
    ups, downs = [], []
    for run in range(1, args.runs + 1):
        name = f"bench{secrets.token_hex(3)}"
        try:
            ups.append(sorctl("up", "--name", name, "--nodes", str(args.nodes), "--relay"))
        finally:
            downs.append(sorctl("down", "--name", name))
        print(f"run {run}: up {ups[-1]:.2f} s, down {downs[-1]:.2f} s", flush=True)
    up, down = statistics.median(ups), statistics.median(downs)
    print(
        f"up --nodes {args.nodes} --relay to ready: median {up:.2f} s "
        f"(target {UP_TARGET_S:.0f} s, ratio {up / UP_TARGET_S:.2f})"
    )
    ratio = down / DOWN_TARGET_S
    print(f"down: median {down:.2f} s (target {DOWN_TARGET_S:.0f} s, ratio {ratio:.2f})")


if __name__ == "__main__":
    main()
