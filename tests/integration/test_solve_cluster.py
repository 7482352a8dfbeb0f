"""`sorctl solve` on real clusters: real containers, real dispy, answers checked against scipy.

Every cluster here is named dt-<random> and removed by its fixture, even when a test fails.
Systems are small (a few hundred to a few thousand unknowns): these tests check correctness and
failure handling, not speed (bench/bench_distributed.py measures that).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl import api
from sorctl.engine import solve_container
from sorctl.errors import ClusterError
from sorctl.options import SolveOptions
from sorctl.solver import io as sio
from sorctl.solver.io import System
from tests.systems import anisotropic2d, dense_spd, poisson2d, poisson3d, random_spd

SORCTL = str(Path(sys.executable).with_name("sorctl"))
pytestmark = pytest.mark.timeout(600)


SYSTEMS = {
    "poisson2d": lambda: poisson2d(24),
    "poisson3d": lambda: poisson3d(8),
    "anisotropic": lambda: anisotropic2d(20),
    "random-irregular": lambda: random_spd(400, 0.01, 11),
    "dense": lambda: dense_spd(80, 5),
}


def up(name: str, *flags: str) -> None:
    subprocess.run([SORCTL, "up", "--name", name, *flags], check=True, timeout=300,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def down(name: str) -> None:
    subprocess.run([SORCTL, "down", "--name", name], timeout=120, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def images(docker_client):
    from sorctl.engine.images import require_images

    require_images(docker_client, ["node", "scheduler", "relay", "router", "client"])


def _cluster(name: str, *flags: str):
    try:
        up(name, *flags)
        cluster = api.cluster_for_solve(name)
        assert cluster is not None, f"cluster {name} is not running after up"
        yield cluster.info()
    finally:
        down(name)


@pytest.fixture(scope="module")
def single(images):
    yield from _cluster(f"dt-{secrets.token_hex(3)}", "--nodes", "2")


@pytest.fixture(scope="module")
def relay(images):
    """Two remote subnets, one node on each: the workers' links to each other cross the router."""
    yield from _cluster(f"dt-{secrets.token_hex(3)}", "--nodes", "2", "--relay", "--subnets", "2")


@pytest.fixture(scope="module")
def tls(images):
    yield from _cluster(f"dt-{secrets.token_hex(3)}", "--nodes", "2", "--tls")


@pytest.fixture
def three(images):
    yield from _cluster(f"dt-{secrets.token_hex(3)}", "--nodes", "3")


def solve_on(info, A, b, *, x0=None, progress=None, checkpoint=None, **kw):
    opts = SolveOptions(**{"rtol": 1e-8, "maxiter": 20000, **kw})
    return solve_container.run(
        info, System(A, b, x0, "test"), opts, progress=progress, checkpoint=checkpoint
    )


def check_answer(A, b, res, rtol):
    want = spla.spsolve(sp.csc_matrix(A), b) if sp.issparse(A) else np.linalg.solve(A, b)
    assert res.converged and res.reason == "rtol"
    assert np.linalg.norm(b - A @ res.x) <= rtol * np.linalg.norm(b) * (1 + 1e-6)
    # cond(A) < 1e4 for these systems: the error is within cond * rtol
    assert np.abs(res.x - want).max() <= 1e4 * rtol * np.abs(want).max()


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_single_network_cluster_solves(single, name):
    A = SYSTEMS[name]()
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    res = solve_on(single, A, b, rtol=1e-8)
    check_answer(A, b, res, 1e-8)
    assert res.backend == f"cluster:{single.name}"
    assert res.extra["nodes"] == 2 and res.extra["blocks"] >= 4 and res.extra["colours"] >= 2
    assert res.extra["bytes_per_iteration"] > 0 and res.extra["comm_s"] > 0
    assert not [ev for ev in res.extra["events"] if ev["event"] == "node_lost"]


def test_tls_cluster_solves_and_stays_usable(tls, docker_client):
    """Twice: the client's probes of a TLS scheduler must not break its accept loop (dispy ends
    it on a failed TLS handshake, and every later submission times out)."""
    assert tls.tls
    for seed, name in enumerate(["poisson2d", "random-irregular"]):
        A = SYSTEMS[name]()
        b = np.random.default_rng(seed).standard_normal(A.shape[0])
        res = solve_on(tls, A, b, rtol=1e-8)
        check_answer(A, b, res, 1e-8)
        assert res.extra["nodes"] == 2
    scheduler = docker_client.containers.get(f"{tls.name}-scheduler")
    assert b"uncaught exception" not in scheduler.logs()


@pytest.mark.parametrize("name,method", [("poisson3d", "ssor"), ("random-irregular", "sor")])
def test_relay_cluster_solves_through_the_router(relay, name, method):
    A = SYSTEMS[name]()
    b = np.random.default_rng(4).standard_normal(A.shape[0])
    res = solve_on(relay, A, b, rtol=1e-8, method=method)
    check_answer(A, b, res, 1e-8)
    assert res.extra["nodes"] == 2 and res.method == method
    subnets = {ipaddress.ip_interface(f"{slot}/24").network for slot in res.extra["node_cpus"]}
    assert len(subnets) == 2  # each node on its own /24
    assert all(w["sent_bytes"] > 0 for w in res.extra["workers"].values())


def test_node_killed_mid_solve_still_reaches_the_answer(three, docker_client):
    A = poisson2d(40)
    b = np.ones(A.shape[0])
    victim = three.nodes[1]
    container = docker_client.containers.get(victim.name)
    killed = threading.Event()
    seen: list[float] = []
    at_kill: list[int] = []

    def progress(iteration, residual):
        seen.append(residual)
        if iteration >= 20 and not killed.is_set():
            at_kill.append(len(seen))
            container.kill()
            killed.set()

    # The kill is this process's answer to a progress line it reads from the client's log: it
    # lands tenths of a second after iteration 20, over a second on a busy machine. With omega
    # 1.85 the whole solve (185 sweeps) took 0.15-0.45 s and could end first; Gauss-Seidel
    # (omega 1) needs ~3,100 sweeps, seconds of solve left when the kill lands.
    res = solve_on(three, A, b, rtol=1e-8, omega=1.0, check_every=5, progress=progress)
    assert killed.is_set()
    check_answer(A, b, res, 1e-8)
    lost = [ev for ev in res.extra["events"] if ev["event"] == "node_lost"]
    moved = [ev for ev in res.extra["events"] if ev["event"] == "block_moved"]
    assert [ev["node"] for ev in lost] == [victim.address]
    assert moved and {ev["source"] for ev in moved} == {victim.address}
    assert victim.address not in {ev["target"] for ev in moved}
    # the moved blocks' rows read again from the file, their values from the buddy's copy: the
    # residual does not jump back towards the start's (Gauss-Seidel's falls monotonically)
    recovered = [ev for ev in res.extra["events"] if ev["event"] == "x_recovered"]
    assert recovered and res.extra["rows_reread"] > 0 and res.extra["recovered_rows"] > 0
    assert max(seen[at_kill[0] :]) <= 10 * seen[at_kill[0] - 1]


def test_scheduler_gone_is_a_clear_error_and_the_checkpoint_resumes(three, docker_client, tmp_path):
    A = poisson2d(40)
    b = np.ones(A.shape[0])
    ckpt = tmp_path / "ck.npz"
    sched = three.role("scheduler")[0]
    killed = threading.Event()

    def progress(iteration, residual):
        if ckpt.exists() and iteration >= 30 and not killed.is_set():
            docker_client.containers.get(sched.name).kill()
            killed.set()

    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="scheduler"):
        # rtol 0: it would run to maxiter, so only the lost scheduler can end it
        solve_on(three, A, b, rtol=0.0, maxiter=10**7, omega=1.85, check_every=5,
                 progress=progress, checkpoint=ckpt, checkpoint_every_s=0.0)  # fmt: skip
    assert killed.is_set()
    assert time.monotonic() - t0 < 120
    x = sio.load_vector(ckpt)
    rel = np.linalg.norm(b - A @ x) / np.linalg.norm(b)
    assert rel < 1e-3  # a real iterate, well past x0 = 0 (relative residual 1)


def test_ctrl_c_stops_the_solve_and_leaves_the_cluster_usable(single, docker_client, tmp_path):
    A = poisson2d(60)
    b = np.ones(A.shape[0])
    system = tmp_path / "p.npz"
    sio.save_system(system, A, b)
    out = tmp_path / "x.npz"
    cmd = [SORCTL, "solve", str(system), "--cluster", single.name, "--rtol", "1e-14",
           "--max-iter", "10000000", "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # progress lines: wait for the solve to be under way
            if line.startswith("iteration"):
                break
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["p.npz"]
    left = docker_client.containers.list(
        all=True, filters={"label": [f"org.sorctl.cluster={single.name}", "org.sorctl.role=client"]}
    )
    assert left == []
    res = solve_on(single, A, b, rtol=1e-6, omega=1.9)
    assert res.converged


def test_cli_flags_reach_the_cluster(single, tmp_path):
    A = poisson2d(30)
    b = np.ones(A.shape[0])
    system = tmp_path / "p.npz"
    sio.save_system(system, A, b)
    cmd = [SORCTL, "solve", str(system), "--cluster", single.name, "--json", "--blocks", "6",
           "--inner-sweeps", "2", "--checkpoint", str(tmp_path / "ck.npz"), "-o",
           str(tmp_path / "x.npz")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["backend"] == f"cluster:{single.name}" and report["converged"]
    assert report["blocks"] == 6 and report["inner_sweeps"] == 2
    # what each process held at its peak, and the bytes of A each link carried
    memory, sent = report["memory"], report["a_bytes"]
    cpus = report["node_cpus"]
    slots = sorted(f"{n}#{k}" if k else n for n, c in cpus.items() for k in range(c))
    assert sorted(memory["workers"]) == sorted(report["workers"]) == slots
    assert all(peak > 0 for peak in memory["workers"].values())
    assert memory["host"] > 0 and memory["client"] > 0
    assert memory["client_cgroup"] > 0  # the client container's cgroup (v1 or v2)
    assert sorted(sent["client_to_workers"]) == slots
    to_workers = sum(sent["client_to_workers"].values())
    assert sent["host_to_client"] == system.stat().st_size
    assert sent["total"] == sent["host_to_client"] + to_workers
    # each entry of A once (its column and value), with its row's number and length
    entries = A.indices.nbytes + A.data.nbytes
    assert entries < to_workers <= entries + 32 * (A.shape[0] + 1)
    x = sio.load_vector(tmp_path / "x.npz")
    assert np.linalg.norm(b - A @ x) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-6)


def test_a_csr_npz_is_checked_on_the_host_and_solved_from_the_file(single, tmp_path):
    A = random_spd(500, 0.01, 4)
    b = np.arange(500, dtype=float) % 7 + 1
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    C = sp.csc_matrix(A)  # deflated CSC: the client container reads the file as the host checked it
    np.savez_compressed(good, data=C.data, indices=C.indices, indptr=C.indptr,
                        shape=np.array(C.shape), format=np.array("csc"), b=b)  # fmt: skip
    proc = subprocess.run([SORCTL, "solve", str(good), "--cluster", single.name, "--json",
                           "-o", str(tmp_path / "x.npz")], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)
    assert first["nnz"] == A.nnz
    x = sio.load_vector(tmp_path / "x.npz")
    assert np.linalg.norm(b - A @ x) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-6)
    # --x0: the client container gets a copy of the file with x0 in it
    proc = subprocess.run([SORCTL, "solve", str(good), "--cluster", single.name, "--json",
                           "--x0", str(tmp_path / "x.npz")], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["iterations"] < first["iterations"] / 2
    N = A.tolil()
    N[3, 400] += 1.0
    N = sp.csr_matrix(N)
    np.savez(bad, data=N.data, indices=N.indices, indptr=N.indptr, shape=np.array(N.shape), b=b)
    runs = [
        subprocess.run(
            [SORCTL, "solve", str(bad), *where], capture_output=True, text=True, timeout=120
        )  # fmt: skip
        for where in (["--cluster", single.name], ["--local"])
    ]
    assert [r.returncode for r in runs] == [2, 2] and runs[0].stderr == runs[1].stderr
    assert "is not symmetric" in runs[0].stderr and len(runs[0].stderr.splitlines()) == 1


def test_gen_grid_rows_are_made_on_the_nodes_and_other_kinds_are_sent(single, tmp_path):
    """--gen poisson3d: no file and no byte of A on any link; the answer checked here against a
    matrix built independently. --gen random-spd: made whole on the host, with a note."""
    out = tmp_path / "x.npz"
    proc = subprocess.run([SORCTL, "solve", "--gen", "poisson3d:12", "--cluster", single.name,
                           "--json", "--method", "cg-ssor", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    A, b = poisson3d(12), np.ones(12**3)
    assert report["source"] == "poisson3d:12" and report["nnz"] == A.nnz
    assert report["a_bytes"]["total"] == 0 and report["a_bytes"]["host_to_client"] == 0
    assert report["made_rows"] == A.shape[0]
    x = sio.load_vector(out)
    assert np.linalg.norm(b - A @ x) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-6)
    proc = subprocess.run([SORCTL, "solve", "--gen", "random-spd:300", "--cluster", single.name,
                           "--json"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "made whole on this host" in proc.stderr
    assert json.loads(proc.stdout)["a_bytes"]["host_to_client"] > 0


def test_solve_without_cluster_picks_none_of_several_and_names_them(single, tls, tmp_path):
    system = tmp_path / "p.npz"
    sio.save_system(system, poisson2d(8), np.ones(64))
    proc = subprocess.run(
        [SORCTL, "solve", str(system), "-o", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert single.name in lines[0] and tls.name in lines[0] and "--cluster" in lines[0]
    assert not (tmp_path / "x.npz").exists()


def test_ctrl_c_in_python_gives_the_interrupted_result_a_local_solve_gives(single):
    program = f"""
import sorctl
from sorctl.solver import gallery
A, b = gallery.poisson2d(200)
def progress(iteration, residual):
    print("progress", iteration, flush=True)
res = sorctl.Cluster({single.name!r}).solve(
    A, b, rtol=1e-14, maxiter=10**7, omega=1.99, check_every=5, callback=progress
)
print("result", res.reason, res.converged, res.x.shape[0], flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until iterations are under way
            if line.startswith("progress") and int(line.split()[1]) > 0:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "result interrupted False 40000" in out, out + err[-2000:]
