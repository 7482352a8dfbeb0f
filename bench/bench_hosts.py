"""A cluster across several Docker hosts, in the simulated lab (tests/lab): how long `up` and
`down` take, and a solve across 2 hosts against the same solve on 2 nodes of one engine
(prints a table; not a test).

- `up` on 3 hosts over 2 subnets, first with no images on the hosts (they are shipped), then
  with the images present; `down` after each. Targets: 3 min, 20 s, 10 s. Between the second
  `up` and its `down`: `scale --remove-host` and `--add-host` of the other subnet's host.
- with --solve: 2-D Poisson M^2 (default 2048) to rtol 1e-6 on 2 lab hosts of 1 CPU each and on
  a single-engine cluster of 2 nodes of 1 CPU each (same machine, same run): time to solution.

Needs a Docker engine, the images (`sorctl images build`) and root (the lab's host image is
made with debootstrap the first time). Brings up its own lab `mhbench-<random>` and removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import lab as simlab  # noqa: E402

SORCTL = [sys.executable, "-m", "sorctl.cli.main"]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.monotonic()
    r = subprocess.run([*SORCTL, *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=1800)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"sorctl {' '.join(args)} failed: {r.stderr.strip()[-400:]}")
    return time.monotonic() - t0, r.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--solve", action="store_true", help="Also the solve comparison.")
    p.add_argument("--m", type=int, default=2048, help="Poisson grid side for --solve.")
    args = p.parse_args()
    name = f"mhbench-{secrets.token_hex(2)}"
    home = Path(tempfile.mkdtemp(prefix="sorctl-bench-"))
    rows: list[tuple[str, str, str]] = []
    lab = simlab.up(name, directory=home / "lab")
    try:
        env = {"HOME": str(lab.ssh_home), "DOCKER_CERT_PATH": str(lab.dir),
               "SORCTL_HOME": str(home / "sorctl")}  # fmt: skip
        hosts = []
        for h in lab.hosts:
            hosts += ["--host", h.tcp if h.subnet == lab.hosts[0].subnet else h.ssh]
        t, _ = run("up", "--name", "mhb", *hosts, env=env)
        rows.append(("up, 3 hosts / 2 subnets, images shipped", f"{t:.1f} s", "<= 180 s"))
        t, _ = run("down", "--name", "mhb", env=env)
        rows.append(("down, 3 hosts", f"{t:.1f} s", "<= 10 s"))
        t, _ = run("up", "--name", "mhb", *hosts, env=env)
        rows.append(("up, 3 hosts / 2 subnets, images present", f"{t:.1f} s", "<= 20 s"))
        # the other subnet's host out of the cluster and in again (its images present)
        t, _ = run("scale", "--name", "mhb", "--remove-host", hosts[-1], env=env)
        rows.append(("scale --remove-host (other subnet)", f"{t:.1f} s", ""))
        t, _ = run("scale", "--name", "mhb", "--add-host", hosts[-1], env=env)
        rows.append(("scale --add-host (other subnet), images present", f"{t:.1f} s", ""))
        t, _ = run("down", "--name", "mhb", env=env)
        rows.append(("down, 3 hosts", f"{t:.1f} s", "<= 10 s"))
        if args.solve:
            rows += solve_rows(lab, env, hosts[:4], args.m, home)
    finally:
        simlab.down(name)
        shutil.rmtree(home, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'measured':>10}  target")
    for what, got, target in rows:
        print(f"{what:<{width}}  {got:>10}  {target}".rstrip())


def solve_rows(lab, env, two_hosts, m, home) -> list[tuple[str, str, str]]:
    system = home / "poisson.npz"
    run("gen", "poisson2d", "--size", str(m), "-o", str(system))
    out = []
    run("up", "--name", "mhb2", *two_hosts, "--cpus-per-node", "1", env=env)
    try:
        _, text = run("solve", str(system), "--cluster", "mhb2", "--rtol", "1e-6", "--json",
                      env=env)  # fmt: skip
    finally:
        run("down", "--name", "mhb2", env=env)
    hosts_s = json.loads(text)["time_s"]
    single = f"mhb1-{secrets.token_hex(2)}"
    local_env = {"SORCTL_HOME": str(home / "sorctl")}
    run("up", "--name", single, "--nodes", "2", "--cpus-per-node", "1", env=local_env)
    try:
        _, text = run("solve", str(system), "--cluster", single, "--rtol", "1e-6", "--json",
                      env=local_env)  # fmt: skip
    finally:
        run("down", "--name", single, env=local_env)
    engine_s = json.loads(text)["time_s"]
    out.append((f"Poisson {m}^2 to 1e-6, 2 hosts x 1 CPU", f"{hosts_s:.1f} s", ""))
    out.append((f"Poisson {m}^2 to 1e-6, 2 nodes x 1 CPU, one engine", f"{engine_s:.1f} s", ""))
    out.append(("  ratio hosts / one engine", f"{hosts_s / engine_s:.2f}x", "<= 1.00x"))
    return out


if __name__ == "__main__":
    main()
