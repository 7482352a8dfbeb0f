"""Peak memory of a cluster solve, measured from outside: the host's `sorctl solve` process and
every container of the cluster.

Writes a 3-D Poisson system as an .npz of CSR arrays, brings up a cluster of --nodes nodes, runs
`sorctl solve FILE --cluster NAME --method M --rtol R --json` as a child process and reads its
peak RSS from os.wait4's rusage (ru_maxrss), and each container's peak from its memory cgroup
(memory.max_usage_in_bytes on cgroup v1, memory.peak on v2; polled while it runs, as the client
container is gone afterwards; on v1 reset before each solve, so each is measured on its own).
Prints the CSR size (data + indices + indptr), the peaks and their ratios to the targets:
  the host process and the client container each at most CSR/4 + 300 MB,
  each node at most CSR/2, all of them together at most 2 x CSR.
Then solves the same file again (another tolerance) and prints the bytes of A sent to the
workers (target 0: the nodes kept their blocks). With --gen, then also the same system from
`sorctl solve --gen poisson3d:SIZE` (each node makes its own rows), measured the same way.

Usage: .venv/bin/python bench/bench_memory.py [--size 200] [--nodes 4] [--method cg-ssor]
       [--rtol 1e-6] [--max-iter N] [--compressed]
       [--also /path/to/other/sorctl]   # e.g. another checkout's sorctl, measured the same way
       [--gen]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker

from sorctl.names import LABEL_CLUSTER, LABEL_ROLE
from sorctl.solver.npz_stream import NpzStream

MB = 1 << 20
HOST_ALLOWANCE = 300 * MB


WRITE = """
import sys, numpy as np
from sorctl.solver import gallery
A, b = gallery.poisson3d(int(sys.argv[2]))
save = np.savez_compressed if sys.argv[3] == "1" else np.savez
save(sys.argv[1], data=A.data, indices=A.indices, indptr=A.indptr,
     shape=np.array(A.shape, dtype=np.int64), format=np.array("csr"), b=b)
"""


def write_system(path: Path, size: int, compressed: bool) -> int:
    """The system file, written by a child process: a child's ru_maxrss starts from its parent's
    RSS when it is forked, so this process stays small. Returns the CSR bytes (data + indices +
    indptr, from the members' headers)."""
    subprocess.run(
        [sys.executable, "-c", WRITE, str(path), str(size), "1" if compressed else "0"], check=True
    )
    with NpzStream(path) as z:
        headers = [z.header(key) for key in ("data", "indices", "indptr")]
    return sum(h.size * h.dtype.itemsize for h in headers if h is not None)


def cgroup_peak(container) -> int | None:
    """The container's peak memory so far, from its cgroup (host files first, else inside it)."""
    cid = container.id
    for path in (
        f"/sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes",
        f"/sys/fs/cgroup/memory/system.slice/docker-{cid}.scope/memory.max_usage_in_bytes",
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.peak",
        f"/sys/fs/cgroup/docker/{cid}/memory.peak",
    ):
        try:
            return int(Path(path).read_text())
        except (OSError, ValueError):
            continue
    try:
        res = container.exec_run(
            ["sh", "-c", "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes "
             "/sys/fs/cgroup/memory.peak 2>/dev/null"]
        )  # fmt: skip
        return int(res.output.split()[0])
    except Exception:  # noqa: BLE001 -- gone meanwhile
        return None


def reset_peaks(cluster: str) -> None:
    """Start every container's cgroup peak again from its present usage (cgroup v1: write 0 to
    memory.max_usage_in_bytes), so each solve is measured on its own, not with the ones before
    it on the same cluster. Where the file cannot be written, the peak is the container's
    lifetime one and the bench says so."""
    client = docker.from_env()
    for c in client.containers.list(filters={"label": f"{LABEL_CLUSTER}={cluster}"}):
        for path in (
            f"/sys/fs/cgroup/memory/docker/{c.id}/memory.max_usage_in_bytes",
            f"/sys/fs/cgroup/memory/system.slice/docker-{c.id}.scope/memory.max_usage_in_bytes",
        ):
            try:
                Path(path).write_text("0")
                break
            except OSError:
                continue
        else:
            print(f"  ({c.name}'s peak could not be reset: it is the container's lifetime peak)")
    client.close()


class Watch(threading.Thread):
    """Polls the cgroup peaks of the cluster's containers until stopped; keeps each one's
    largest, by (role, name)."""

    def __init__(self, cluster: str) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.peaks: dict[tuple[str, str], int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        client = docker.from_env()
        while not self.stop.is_set():
            self.poll(client)
            self.stop.wait(0.05)
        self.poll(client)
        client.close()

    def poll(self, client) -> None:
        for c in client.containers.list(filters={"label": f"{LABEL_CLUSTER}={self.cluster}"}):
            peak = cgroup_peak(c)
            if peak is not None:
                key = (c.labels.get(LABEL_ROLE, "?"), c.name)
                self.peaks[key] = max(self.peaks.get(key, 0), peak)

    def of(self, role: str) -> dict[str, int]:
        return {name: peak for (r, name), peak in sorted(self.peaks.items()) if r == role}


def measure(cmd: list[str], system: list[str], cluster: str, solve_args: list[str], env):
    """(exit code, host peak RSS bytes, the containers' peaks) of one cluster solve of `system`
    (a file, or --gen KIND:SIZE)."""
    reset_peaks(cluster)
    watch = Watch(cluster)
    watch.start()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*cmd, "solve", *system, "--cluster", cluster, "--json", *solve_args],
            stdout=out, stderr=err, env=env,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        watch.stop.set()
        watch.join()
        if proc.returncode not in (0, 3):
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} solve failed ({proc.returncode}): {err.read().decode()}")
        out.seek(0)
        report = json.loads(out.read().decode())
    if not watch.of("client"):
        print("  (the client container's cgroup was never read)", flush=True)
    return proc.returncode, usage.ru_maxrss * 1024, watch, report  # ru_maxrss: KiB on Linux


def report(label: str, csr: int, code: int, host: int, watch: Watch, seconds: float) -> None:
    small = csr / 4 + HOST_ALLOWANCE
    client = max(watch.of("client").values(), default=0)
    nodes = watch.of("node")
    total = host + sum(watch.peaks.values())
    print(f"{label}: exit {code}, {seconds:.1f} s", flush=True)
    rows = [("host sorctl solve", host, small, "CSR/4 + 300 MB"),
            ("client container", client, small, "CSR/4 + 300 MB"),
            *((f"node {name}", peak, csr / 2, "CSR/2") for name, peak in nodes.items()),
            ("all processes together", total, 2 * csr, "2 x CSR")]  # fmt: skip
    for what, peak, target, rule in rows:
        print(f"  {what:28s} {peak / MB:7.0f} MB  {peak / target:5.2f} x the target ({rule})")
    others = {n: p for (r, n), p in watch.peaks.items() if r not in ("client", "node")}
    if others:
        listed = ", ".join(f"{n} {p / MB:.0f} MB" for n, p in others.items())
        print(f"  (in the total: {listed})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200, help="grid points per side")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--method", default="cg-ssor")
    parser.add_argument("--rtol", default="1e-6")
    parser.add_argument("--max-iter", type=int, default=None)
    parser.add_argument("--compressed", action="store_true", help="np.savez_compressed")
    parser.add_argument("--also", action="append", default=[], help="another sorctl to measure")
    parser.add_argument(
        "--gen", action="store_true", help="also solve --gen poisson3d:SIZE (nodes make rows)"
    )
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("SORCTL_HOME", tempfile.mkdtemp(prefix="sorctl-bench-"))
    here = [sys.executable, "-m", "sorctl.cli.main"]
    name = f"stream-mem-{secrets.token_hex(3)}"
    solve_args = ["--method", args.method, "--rtol", args.rtol]
    if args.max_iter is not None:
        solve_args += ["--max-iter", str(args.max_iter)]
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        file = Path(tmp) / f"poisson3d-{args.size}.npz"
        csr = write_system(file, args.size, args.compressed)
        how = "compressed" if args.compressed else "stored"
        print(
            f"3-D Poisson {args.size}^3: n = {args.size**3}, CSR {csr / MB:.0f} MB, "
            f"file {file.stat().st_size / MB:.0f} MB ({how}); {args.nodes} nodes, "
            f"{' '.join(solve_args)}",
            flush=True,
        )
        up = ["up", "--name", name, "--nodes", str(args.nodes)]
        subprocess.run([*here, *up], check=True, env=env, stdout=subprocess.DEVNULL)
        try:
            for label, cmd in [("this sorctl", here), *((p, [p]) for p in args.also)]:
                t0 = time.perf_counter()
                code, host, watch, _ = measure(cmd, [str(file)], name, solve_args, env)
                report(label, csr, code, host, watch, time.perf_counter() - t0)
            # the same file again, another tolerance: the nodes kept their blocks
            again = ["--method", args.method, "--rtol", "1e-4", *solve_args[4:]]
            t0 = time.perf_counter()
            _, _, _, rep = measure(here, [str(file)], name, again, env)
            sent = rep["a_bytes"]["client_to_workers"]
            print(
                f"second solve of the file ({' '.join(again)}): {sum(sent.values())} bytes "
                f"of A sent to the workers (target 0), {rep['kept_blocks']} of "
                f"{rep['blocks']} blocks kept on the nodes; "
                f"{time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            if args.gen:  # the same system, made by the nodes: no file, no byte of A sent
                t0 = time.perf_counter()
                gen = ["--gen", f"poisson3d:{args.size}"]
                code, host, watch, rep = measure(here, gen, name, solve_args, env)
                report(f"solve {' '.join(gen)}", csr, code, host, watch,
                       time.perf_counter() - t0)  # fmt: skip
                print(f"  bytes of A sent: {rep['a_bytes']['total']}, rows made on the nodes: "
                      f"{rep['made_rows']}", flush=True)  # fmt: skip
        finally:
            subprocess.run([*here, "down", "--name", name], env=env, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
