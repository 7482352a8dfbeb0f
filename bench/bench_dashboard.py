"""What the dashboard's polling costs: each JSON request the page makes, against a real cluster
(`sorctl up --nodes N --relay`, brought up and taken down here) and a real solve's feed, and the
scheduler's node table that readiness and status read, against reading the scheduler's whole log
as they did before (the log grows with every job; the table does not).

Usage: .venv/bin/python bench/bench_dashboard.py [--nodes 4] [--repeat 20] [--name NAME]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

from starlette.testclient import TestClient

from sorctl import api, solvefeed
from sorctl.dashboard import server
from sorctl.engine import observe
from sorctl.engine.connect import connect
from sorctl.solver import gallery

DISCOVERED = re.compile(r"Discovered (?P<addr>[\d.]+):\d+ \((?P<name>[^)]*)\) with (?P<cpus>\d+)")


def timed(fn, repeat: int) -> tuple[float, float]:
    """(median, max) milliseconds of fn() over `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--name", default=f"bench-dash-{secrets.token_hex(2)}")
    args = parser.parse_args()
    os.environ.setdefault("SORCTL_HOME", tempfile.mkdtemp(prefix="sorctl-bench-"))
    up = [sys.executable, "-m", "sorctl.cli.main", "up", "--name", args.name, "--nodes",
          str(args.nodes), "--relay"]  # fmt: skip
    subprocess.run(up, check=True, stdout=subprocess.DEVNULL)
    try:
        cluster = api.Cluster(args.name)
        A, b = gallery.poisson2d(200)
        res = cluster.solve(A, b, rtol=1e-8, omega=1.97, check_every=10)
        app = TestClient(server.create_app(cluster=args.name))
        feed_id = app.get("/api/solves").json()["solves"][0]["id"]
        rows = [
            ("GET /api/clusters", lambda: app.get("/api/clusters")),
            ("GET /api/solves", lambda: app.get("/api/solves")),
            (f"GET /api/solves/{feed_id} (whole feed)", lambda: app.get(f"/api/solves/{feed_id}")),
        ]
        client = connect()
        info = cluster.info()
        sched = client.containers.get(info.role("scheduler")[0].name)

        def from_log() -> None:
            text = sched.logs().decode(errors="replace")
            assert len({m["addr"] for m in DISCOVERED.finditer(text)}) >= args.nodes

        rows += [
            (
                "scheduler node table (readiness, status)",
                lambda: observe.scheduler_view(client, info),
            ),
            ("scheduler log read and parsed (before)", from_log),
        ]
        log_lines = len(sched.logs().splitlines())
        feed_bytes = sum(p.stat().st_size for p in solvefeed.feed_dir().glob("*.jsonl"))
        print(f"cluster {args.name}: {args.nodes} nodes, relay layout; a solve of "
              f"n = {A.shape[0]}, {res.iterations} iterations in {res.time_s:.1f} s, its feed "
              f"{feed_bytes} bytes; scheduler log {log_lines} lines")  # fmt: skip
        print(f"| what | median ms | max ms (of {args.repeat}) |")
        print("|---|---|---|")
        for label, fn in rows:
            med, worst = timed(fn, args.repeat)
            print(f"| {label} | {med:.1f} | {worst:.1f} |")
        client.close()
    finally:
        down = [sys.executable, "-m", "sorctl.cli.main", "down", "--name", args.name]
        subprocess.run(down, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
