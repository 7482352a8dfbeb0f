"""Worker processes answering the driver over direct connections (on loopback, no dispy): the
same node.serve and WorkerPool code the cluster runs, including a worker killed mid-solve."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl.cluster.material import self_signed
from sorctl.distributed import node
from sorctl.distributed.workers import WorkerPool
from sorctl.errors import ClusterError
from tests.drivers import cluster_solve as solve
from tests.workers import CTX, workers

pytestmark = pytest.mark.timeout(300)


def poisson2d(m: int) -> sp.csr_matrix:
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    return sp.csr_matrix(sp.kron(sp.identity(m), t) + sp.kron(t, sp.identity(m)))


@pytest.fixture(scope="module")
def cluster_cert(tmp_path_factory):
    """A --tls cluster's certificate and key files (the same maker as `sorctl up --tls`)."""
    cert, key = self_signed("sorctl-test")
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    return str(folder / "cert.pem"), str(folder / "key.pem")


@pytest.fixture(params=["hmac", "tls"])
def pool(request, cluster_cert):
    """Three worker processes, as dispy would start them: each serves until hung up on; over
    multiprocessing.connection, or over TLS as on a --tls cluster (links between them too)."""
    tls = cluster_cert if request.param == "tls" else None
    with workers({"w0": 1, "w1": 1, "w2": 1}, processes=True, tls=tls) as pool:
        yield pool


def test_workers_solve_over_their_own_links(pool):
    A = poisson2d(30)
    b = np.ones(A.shape[0])
    assert sorted(pool.nodes()) == ["w0", "w1", "w2"]
    res = solve(A, b, pool, omega=1.8, rtol=1e-10, check_every=5)
    assert res.converged and res.extra["nodes"] == 3 and res.extra["blocks"] == 6
    np.testing.assert_allclose(res.x, spla.spsolve(sp.csc_matrix(A), b), rtol=1e-7)
    sent = {slot: w["sent_bytes"] for slot, w in res.extra["workers"].items()}
    assert sorted(sent) == ["w0", "w1", "w2"] and all(v > 0 for v in sent.values())


def test_workers_run_cg_with_sums_among_themselves(pool):
    """cg-ssor links every worker to every other (its inner products are summed among them):
    over TLS as well, and with workers that share no block boundary."""
    A = poisson2d(30)
    b = np.ones(A.shape[0])
    res = solve(A, b, pool, method="cg-ssor", rtol=1e-10)
    assert res.converged and res.method == "cg-ssor" and res.extra["nodes"] == 3
    np.testing.assert_allclose(res.x, spla.spsolve(sp.csc_matrix(A), b), rtol=1e-7)
    assert all(w["sent_bytes"] > 0 for w in res.extra["workers"].values())


def test_a_killed_worker_is_noticed_and_its_blocks_move(pool):
    A = poisson2d(40)
    b = np.ones(A.shape[0])

    def progress(iteration, residual):
        if iteration == 20:
            pool.kill("w1")

    res = solve(A, b, pool, omega=1.8, rtol=1e-10, check_every=5, callback=progress)
    assert res.converged
    np.testing.assert_allclose(res.x, spla.spsolve(sp.csc_matrix(A), b), rtol=1e-7)
    lost = [ev for ev in res.extra["events"] if ev["event"] == "node_lost"]
    assert [ev["node"] for ev in lost] == ["w1"]
    moved = [ev for ev in res.extra["events"] if ev["event"] == "block_moved"]
    assert moved and all(ev["target"] in ("w0", "w2") for ev in moved)


def test_an_error_on_the_worker_is_a_cluster_failure_with_its_message(pool):
    job = pool.submit("w0", "gather", "nosuchsolve", 3, None)
    assert job.wait(30)
    with pytest.raises(ClusterError, match="not on this node"):
        job.outcome()
    # the worker goes on serving after an error
    job = pool.submit("w0", "drop", "nosuchsolve", 0, None)
    assert job.wait(30) and job.outcome() is None


def test_a_worker_that_never_connects_is_reported_not_waited_on():
    pool = WorkerPool("127.0.0.1")
    pool.expect("ghost", lambda: "its job ended")
    pool.wait_connected(30)
    assert pool.nodes() == {} and pool.failures() == {"ghost": "its job ended"}
    pool.close()


@pytest.mark.parametrize("wrong", ["certificate", "authkey"])
def test_a_tls_worker_without_the_certificate_or_the_key_is_not_let_in(cluster_cert, wrong):
    pool = WorkerPool("127.0.0.1", cluster_cert)
    cert = self_signed("other")[0].decode() if wrong == "certificate" else None
    cadata = cert or Path(cluster_cert[0]).read_text()
    authkey = b"x" * 32 if wrong == "authkey" else pool.authkey
    p = CTX.Process(target=node.serve, args=(pool.address, authkey, "w0", 60, cadata))
    p.start()
    pool.expect("w0", lambda: "" if p.is_alive() else f"exit code {p.exitcode}")
    pool.wait_connected(30)
    p.join(30)
    assert pool.nodes() == {} and p.exitcode != 0
    pool.close()


def test_a_worker_killed_during_a_round_stops_the_round_not_the_solve(pool):
    """The others wait for its values when it dies: they are told to stop, the survivors'
    values are gathered, its blocks move, and the solve goes on."""
    A = poisson2d(120)
    b = np.ones(A.shape[0])
    first_round = threading.Event()
    killer = threading.Thread(target=lambda: first_round.wait(60) and pool.kill("w2"))
    killer.start()
    res = solve(
        A, b, pool, omega=1.9, rtol=1e-8, check_every=400, callback=lambda *_: first_round.set()
    )
    killer.join()
    assert res.converged
    np.testing.assert_allclose(res.x, spla.spsolve(sp.csc_matrix(A), b), rtol=1e-5)
    lost = [ev for ev in res.extra["events"] if ev["event"] == "node_lost"]
    assert [ev["node"] for ev in lost] == ["w2"] and res.extra["rounds"]["gather"] >= 2
