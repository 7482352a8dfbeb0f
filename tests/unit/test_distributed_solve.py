"""The distributed driver with workers on loopback (tests/workers.py: the node code, no dispy):
exact SOR iterates, convergence against scipy's direct solve, node loss, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl.distributed.driver import plan
from sorctl.distributed.partition import contiguous_blocks
from sorctl.errors import ClusterError, InputError
from sorctl.solver.omega import BLOCK_COLOURED_SSOR_OMEGA_MAX, choose_omega, choose_ssor_omega
from tests.drivers import cluster_solve as solve
from tests.systems import anisotropic2d, dense_spd, poisson2d, poisson3d, random_spd
from tests.workers import workers

pytestmark = pytest.mark.timeout(300)


def reference_sor(A: sp.csr_matrix, b, x, omega, order, sweeps):
    """The textbook loop, rows visited in `order`."""
    x = x.copy()
    A = sp.csr_matrix(A)
    for _ in range(sweeps):
        for i in order:
            lo, hi = A.indptr[i], A.indptr[i + 1]
            cols, vals = A.indices[lo:hi], A.data[lo:hi]
            aii = vals[cols == i].sum()
            s = vals[cols != i] @ x[cols[cols != i]]
            x[i] = (1 - omega) * x[i] + omega / aii * (b[i] - s)
    return x


def sweep_order(p) -> list[int]:
    by_colour = [np.flatnonzero(p.colour == c) for c in range(p.ncolours)]
    return [int(r) for ids in by_colour for k in ids for r in p.parts[k]]


def row_colouring_parts(A: sp.csr_matrix, per_colour: int) -> list[np.ndarray]:
    """Blocks made of single-colour rows: a greedy row colouring, each colour cut in pieces."""
    n = A.shape[0]
    colour = np.full(n, -1)
    for i in range(n):
        nb = A.indices[A.indptr[i] : A.indptr[i + 1]]
        taken = set(colour[nb[nb != i]].tolist())
        c = 0
        while c in taken:
            c += 1
        colour[i] = c
    return [
        p
        for c in range(colour.max() + 1)
        for p in np.array_split(np.flatnonzero(colour == c), per_colour)
    ]


@pytest.mark.parametrize("how", ["row-colouring", "rcm-blocks"])
def test_one_inner_sweep_equals_global_sor_in_the_permuted_order(how):
    A = random_spd(150, 0.04, 3) if how == "row-colouring" else poisson2d(12)
    n = A.shape[0]
    rng = np.random.default_rng(1)
    b, x0 = rng.standard_normal(n), rng.standard_normal(n)
    nodes = {"a": 1, "b": 2}
    parts = row_colouring_parts(A, 3) if how == "row-colouring" else contiguous_blocks(A, 6)
    p = plan(A, nodes, parts=parts)
    assert p.ncolours >= 2
    want = reference_sor(A, b, x0, 1.3, sweep_order(p), 4)
    with workers(nodes) as ex:
        res = solve(A, b, ex, x0=x0, omega=1.3, rtol=0.0, maxiter=4, check_every=1, parts=parts)
    assert res.reason == "maxiter" and res.iterations == 4
    np.testing.assert_allclose(res.x, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


SYSTEMS = {
    "poisson2d": lambda: poisson2d(24),
    "poisson3d": lambda: poisson3d(8),
    "anisotropic": lambda: anisotropic2d(20),
    "random-irregular": lambda: random_spd(400, 0.01, 11),
    "dense": lambda: dense_spd(60, 5),
}


@pytest.mark.parametrize("name", sorted(SYSTEMS))
@pytest.mark.parametrize("method,inner", [("sor", 1), ("sor", 3), ("ssor", 2)])
def test_converges_to_scipys_direct_solution(name, method, inner):
    A = SYSTEMS[name]()
    n = A.shape[0]
    b = np.random.default_rng(2).standard_normal(n)
    want = spla.spsolve(sp.csc_matrix(A), b) if sp.issparse(A) else np.linalg.solve(A, b)
    with workers({"n1": 1, "n2": 1, "n3": 2}) as ex:
        res = solve(
            A, b, ex, omega=1.5, rtol=1e-9, maxiter=20000, method=method, inner_sweeps=inner
        )
    assert res.converged and res.reason == "rtol"
    assert np.linalg.norm(b - A @ res.x) <= 1e-9 * np.linalg.norm(b) * (1 + 1e-6)
    # error <= cond(A) * rtol; these systems have cond < 1e4
    np.testing.assert_allclose(res.x, want, atol=1e-4 * np.abs(want).max())
    assert res.extra["blocks"] >= 4 and res.extra["colours"] >= 2 and res.extra["nodes"] == 3
    assert res.extra["bytes_per_iteration"] > 0


def test_omega_is_estimated_when_not_given():
    A = poisson2d(20)
    b = np.ones(A.shape[0])
    with workers({"n": 2}) as ex:
        res = solve(A, b, ex, rtol=1e-8)
    assert res.converged and res.omega_source == "estimated" and 1.0 < res.omega < 2.0


def test_a_killed_node_moves_its_blocks_and_the_answer_is_still_right():
    A = poisson2d(30)
    b = np.ones(A.shape[0])
    with workers({"n1": 1, "n2": 1, "n3": 1}, processes=True) as ex:

        def progress(iteration, residual):
            if iteration >= 20 and "n2" in ex.nodes():
                ex.kill("n2")  # between rounds; the next round finds it gone

        res = solve(
            A, b, ex, omega=1.7, rtol=1e-10, maxiter=5000, check_every=10, callback=progress
        )
    assert res.converged
    np.testing.assert_allclose(res.x, spla.spsolve(sp.csc_matrix(A), b), rtol=1e-6)
    kinds = [ev["event"] for ev in res.extra["events"]]
    assert kinds.count("node_lost") == 1
    moved = [ev for ev in res.extra["events"] if ev["event"] == "block_moved"]
    assert moved and all(ev["source"] == "n2" and ev["target"] in ("n1", "n3") for ev in moved)
    # the lost worker has no peak; the rows of the blocks moved off it were read again
    assert sorted(res.extra["memory"]["workers"]) == ["n1", "n3"]
    parts = plan(A, {"n1": 1, "n2": 1, "n3": 1}).parts
    assert res.extra["rows_reread"] == sum(parts[ev["block"]].size for ev in moved)
    sent = res.extra["a_bytes"]["client_to_workers"]
    assert sum(sent.values()) > A.data.nbytes + A.indices.nbytes


def test_every_node_killed_is_a_clear_failure():
    A = poisson2d(10)
    with workers({"n1": 1, "n2": 1}, processes=True) as ex:

        def progress(iteration, residual):
            for slot in list(ex.nodes()):
                ex.kill(slot)

        with pytest.raises(ClusterError, match="every node is gone"):
            solve(A, np.ones(100), ex, omega=1.5, rtol=1e-12, maxiter=1000, callback=progress)


def test_checkpoints_hold_a_resumable_x():
    A = poisson2d(16)
    b = np.ones(A.shape[0])
    saved = []
    kw = {"omega": 1.6, "rtol": 1e-10}
    with workers({"n": 2}) as ex:
        first = solve(
            A, b, ex, **kw, maxiter=60, check_every=20,
            checkpoint=lambda x, it, r: saved.append((x, it, r)), checkpoint_every_s=0.0,
        )  # fmt: skip
        assert first.reason == "maxiter" and [it for _, it, _ in saved] == [20, 40, 60]
        x_ck, _, r_ck = saved[-1]
        assert np.linalg.norm(b - A @ x_ck) / np.linalg.norm(b) == pytest.approx(r_ck, rel=1e-9)
        fresh = solve(A, b, ex, **kw, maxiter=5000, check_every=5)
        resumed = solve(A, b, ex, **kw, x0=x_ck, maxiter=5000, check_every=5)
    assert resumed.converged and resumed.iterations <= fresh.iterations - 50


def test_workers_exchange_only_halo_values():
    A = poisson2d(200)
    n = A.shape[0]
    with workers({"a": 2, "b": 2}) as ex:
        res = solve(A, np.ones(n), ex, omega=1.9, rtol=0.0, maxiter=1)
    # 8 blocks of a 200x200 mesh: 7 cuts, each about 2 diagonal mesh lines each way (~10% of x)
    assert res.extra["blocks"] == 8
    assert 0 < res.extra["bytes_per_iteration"] < 0.15 * 8 * n


def test_maxiter_and_divergence_reasons():
    A = poisson2d(10)
    b = np.ones(100)
    with workers() as ex:
        res = solve(A, b, ex, omega=1.5, rtol=1e-12, maxiter=7, check_every=5)
        assert res.reason == "maxiter" and not res.converged and res.iterations == 7
        bad = sp.csr_matrix(np.array([[1.0, 3.0], [3.0, 1.0]]))  # indefinite: SOR blows up
        res = solve(bad, np.ones(2), ex, omega=1.0, rtol=1e-12, maxiter=10000, check_every=1)
    assert res.reason == "diverged" and not res.converged


def test_bad_arguments_are_input_errors():
    A = poisson2d(4)
    with workers() as ex:
        with pytest.raises(InputError, match="omega"):
            solve(A, np.ones(16), ex, omega=2.5)
        with pytest.raises(InputError, match="method"):
            solve(A, np.ones(16), ex, omega=1.0, method="multicolor")


def test_report_carries_the_distributed_fields():
    A = poisson2d(10)
    with workers({"a": 1, "b": 1}) as ex:
        res = solve(A, np.ones(100), ex, omega=1.5, rtol=1e-6, backend="cluster:t")
    rep = res.to_report()
    for key in (
        "nodes",
        "blocks",
        "colours",
        "bytes_per_iteration",
        "compute_s",
        "comm_s",
        "events",
    ):
        assert key in rep
    assert rep["backend"] == "cluster:t" and rep["converged"]


def test_report_has_each_processs_peak_memory_and_the_bytes_of_a_each_worker_got():
    A = poisson2d(60)
    held = np.ones(8 << 20)  # 64 MiB, touched: this process (the client here) peaks above it
    with workers({"a": 1, "b": 2}, processes=True) as ex:
        res = solve(A, np.ones(A.shape[0]), ex, omega=1.8, rtol=1e-6)
    rep = res.to_report()
    memory, sent = rep["memory"], rep["a_bytes"]
    assert set(memory) == {"client", "workers"}  # the host adds its own, and the container's
    assert memory["client"] >= held.nbytes
    assert sorted(memory["workers"]) == sorted(rep["workers"]) == ["a", "b", "b#1"]
    assert sorted(sent["client_to_workers"]) == ["a", "b", "b#1"]
    assert sum(sent["client_to_workers"].values()) == sent["total"]
    # each entry of A travels once (its column and value), with its row's number and length
    entries = A.indices.nbytes + A.data.nbytes
    assert entries < sent["total"] <= entries + 16 * (A.shape[0] + 1) * 2
    assert rep["block_data_bytes"] > A.data.nbytes and rep["rows_reread"] == 0
    for slot, peak in memory["workers"].items():
        # a worker process holds numpy, scipy and numba, and its blocks of A
        assert peak >= max(sent["client_to_workers"][slot], 20 << 20)
        assert peak < 4 << 30


def test_a_node_lost_at_the_final_gather_is_rechecked_not_trusted():
    A = poisson2d(16)
    b = np.ones(A.shape[0])
    kw = {"omega": 1.7, "rtol": 1e-8, "check_every": 5}
    with workers({"a": 1, "b": 1}) as ex:
        first = solve(A, b, ex, **kw)
    with workers({"a": 1, "b": 1}, processes=True) as ex:

        def progress(iteration, residual):
            if residual <= kw["rtol"] and "b" in ex.nodes():
                ex.kill("b")  # the next thing the driver does is gather x

        res = solve(A, b, ex, **kw, callback=progress)
    kinds = [ev["event"] for ev in res.extra["events"]]
    assert "node_lost" in kinds and "recheck" in kinds
    assert res.converged and res.iterations > first.iterations
    assert np.linalg.norm(b - A @ res.x) <= 1e-8 * np.linalg.norm(b)


@pytest.mark.parametrize("method", ["sor", "cg-ssor"])
@pytest.mark.parametrize(
    "name, cpus",
    [("poisson2d-60", {"n1": 1, "n2": 1}), ("anisotropic", {"n1": 2, "n2": 1}),
     ("random-irregular", {"n1": 1, "n2": 2})],
)  # fmt: skip
def test_omega_estimated_on_the_workers_is_the_local_rule_to_two_digits(method, name, cpus):
    """The estimate runs on the workers' rows (no whole-matrix Lanczos in the driver) and gives
    the local rule's omega to 2 digits, on grids and on a matrix nobody tuned for."""
    A = {
        "poisson2d-60": lambda: poisson2d(60),
        "anisotropic": lambda: anisotropic2d(50, 0.05),
        "random-irregular": lambda: random_spd(900, 0.006, 5),
    }[name]()
    choose = choose_ssor_omega if method == "cg-ssor" else choose_omega
    want, _, want_extra = choose(A, None)
    with workers(cpus) as ex:
        res = solve(A, np.ones(A.shape[0]), ex, rtol=1e-6, method=method, maxiter=3)
    assert res.omega_source == "estimated"
    key = "lambda_min" if method == "cg-ssor" else "rho_jacobi"
    assert res.extra[key] == pytest.approx(want_extra[key], rel=0.05)
    got = res.omega
    if method == "cg-ssor" and res.extra["order"] == "coloured":
        want = min(want, BLOCK_COLOURED_SSOR_OMEGA_MAX)
    assert round(got, 2) == pytest.approx(round(want, 2), abs=0.011)
    omega_events = [ev for ev in res.extra["events"] if ev["event"] == "omega"]
    assert len(omega_events) == 1 and omega_events[0]["steps"] > 0


def test_omega_estimate_starts_again_after_a_node_is_lost_during_it():
    A = poisson2d(60)
    want = choose_omega(A, None)[0]
    with workers({"a": 1, "b": 1}, processes=True) as ex:
        seen = []

        def on_event(ev):
            seen.append(ev["event"])
            if ev["event"] == "placed":
                ex.kill("b")  # the next rounds are the estimate's

        res = solve(A, np.ones(A.shape[0]), ex, rtol=1e-6, on_event=on_event)
    assert "node_lost" in seen and res.converged
    assert seen.index("node_lost") < seen.index("omega")  # lost during the estimate
    assert round(res.omega, 2) == pytest.approx(round(want, 2), abs=0.011)


@pytest.mark.parametrize("method", ["sor", "cg-ssor"])
def test_send_seconds_per_worker_only_when_workers_send_each_other(method):
    """send_s: the seconds each worker's sender threads spent in the links' send. With blocks
    on two workers each sends its neighbour halos; a lone worker has no link to send on."""
    A = poisson2d(30)
    b = np.ones(A.shape[0])
    with workers({"n1": 1, "n2": 1}) as ex:
        res = solve(A, b, ex, method=method, omega=1.7, rtol=1e-8)
    assert res.converged and sorted(res.extra["workers"]) == ["n1", "n2"]
    assert all(w["send_s"] > 0 for w in res.extra["workers"].values())
    with workers({"n": 1}) as ex:
        res = solve(A, b, ex, method=method, omega=1.7, rtol=1e-8)
    assert res.converged and len(res.extra["workers"]) == 1
    assert all(w["send_s"] == 0 for w in res.extra["workers"].values())
