"""Peak memory of a cluster solve, measured from outside: the host's `sorctl solve` process and
the client container.

Writes a 3-D Poisson system as an .npz of CSR arrays, brings up a 2-node cluster, runs
`sorctl solve FILE --cluster NAME --json --max-iter N` as a child process and reads its peak
RSS from os.wait4's rusage (ru_maxrss), and the client container's peak from its memory cgroup
(memory.max_usage_in_bytes on cgroup v1, memory.peak on v2, polled while it runs). Prints the
CSR size (data + indices + indptr), both peaks and their ratios to it. Target: the host process
at most a quarter of the CSR size plus 300 MB.

Usage: .venv/bin/python bench/bench_memory.py [--size 120] [--max-iter 5] [--compressed]
       [--also /path/to/other/sorctl]   # e.g. another checkout's sorctl, measured the same way
"""

from __future__ import annotations

import argparse
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


class ClientWatch(threading.Thread):
    """Polls the cluster's client containers' cgroup peaks until stopped; keeps the largest."""

    def __init__(self, cluster: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.peak, self.seen = cluster, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        client = docker.from_env()
        labels = [f"{LABEL_CLUSTER}={self.cluster}", f"{LABEL_ROLE}=client"]
        while not self.stop.is_set():
            for c in client.containers.list(filters={"label": labels}):
                peak = cgroup_peak(c)
                if peak is not None:
                    self.seen += 1
                    self.peak = max(self.peak, peak)
            self.stop.wait(0.05)
        client.close()


def measure(cmd: list[str], file: Path, cluster: str, max_iter: int, env) -> tuple[int, int, int]:
    """(exit code, host peak RSS bytes, client container peak bytes) of one cluster solve."""
    watch = ClientWatch(cluster)
    watch.start()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [*cmd, "solve", str(file), "--cluster", cluster, "--json", "--max-iter", str(max_iter)],
            stdout=out, stderr=err, env=env,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        watch.stop.set()
        watch.join()
        if proc.returncode not in (0, 3):
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} solve failed ({proc.returncode}): {err.read().decode()}")
    if not watch.seen:
        print("  (the client container's cgroup was never read)", flush=True)
    return proc.returncode, usage.ru_maxrss * 1024, watch.peak  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=120, help="grid points per side")
    parser.add_argument("--max-iter", type=int, default=5, help="sweeps (memory, not speed)")
    parser.add_argument("--compressed", action="store_true", help="np.savez_compressed")
    parser.add_argument("--also", action="append", default=[], help="another sorctl to measure")
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("SORCTL_HOME", tempfile.mkdtemp(prefix="sorctl-bench-"))
    here = [sys.executable, "-m", "sorctl.cli.main"]
    name = f"stream-mem-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        file = Path(tmp) / f"poisson3d-{args.size}.npz"
        csr = write_system(file, args.size, args.compressed)
        how = "compressed" if args.compressed else "stored"
        print(
            f"3-D Poisson {args.size}^3: n = {args.size**3}, CSR {csr / MB:.0f} MB, "
            f"file {file.stat().st_size / MB:.0f} MB ({how})",
            flush=True,
        )
        subprocess.run([*here, "up", "--name", name, "--nodes", "2"], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            for label, cmd in [("this sorctl", here), *((p, [p]) for p in args.also)]:
                t0 = time.perf_counter()
                code, host, client = measure(cmd, file, name, args.max_iter, env)
                target = csr / 4 + HOST_ALLOWANCE
                print(
                    f"{label}: host peak {host / MB:.0f} MB ({host / csr:.2f} x CSR; "
                    f"{host / target:.2f} x the target CSR/4 + 300 MB), client container peak "
                    f"{client / MB:.0f} MB ({client / csr:.2f} x CSR); exit {code}, "
                    f"{time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
        finally:
            subprocess.run([*here, "down", "--name", name], env=env, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
