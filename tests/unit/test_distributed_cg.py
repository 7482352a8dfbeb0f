"""cg-ssor on the distributed driver with workers on loopback (tests/workers.py: the node code,
no dispy): iterates against an in-process PCG with the same block-coloured SSOR preconditioner,
solutions against scipy's cg and direct solves, node loss, stopping reasons."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl.distributed.driver import plan
from sorctl.errors import InputError
from sorctl.solver.omega import BLOCK_COLOURED_SSOR_OMEGA_MAX, choose_ssor_omega
from tests.drivers import cluster_solve as solve
from tests.drivers import local_solve
from tests.systems import anisotropic2d, dense_spd, poisson2d, poisson3d, random_spd
from tests.workers import workers

pytestmark = pytest.mark.timeout(300)


def ssor_apply(A: sp.csr_matrix, r, omega, order):
    """z = M^-1 r: one forward SOR sweep from z = 0 in `order`, then one backward (textbook)."""
    z = np.zeros_like(r)
    for seq in (order, order[::-1]):
        for i in seq:
            lo, hi = A.indptr[i], A.indptr[i + 1]
            cols, vals = A.indices[lo:hi], A.data[lo:hi]
            off = cols != i
            z[i] = (1 - omega) * z[i] + omega / vals[~off].sum() * (r[i] - vals[off] @ z[cols[off]])
    return z


def reference_pcg(A, b, x, omega, order, iterations):
    """Textbook PCG (Saad, Algorithm 9.1) with that preconditioner."""
    r = b - A @ x
    z = ssor_apply(A, r, omega, order)
    p, rz = z.copy(), r @ z
    for _ in range(iterations):
        q = A @ p
        alpha = rz / (p @ q)
        x, r = x + alpha * p, r - alpha * q
        z = ssor_apply(A, r, omega, order)
        rz, rz_old = r @ z, rz
        p = z + rz / rz_old * p
    return x


def sweep_order(p) -> list[int]:
    by_colour = [np.flatnonzero(p.colour == c) for c in range(p.ncolours)]
    return [int(r) for ids in by_colour for k in ids for r in p.parts[k]]


@pytest.mark.parametrize("name", ["poisson2d", "random-irregular"])
def test_iterates_equal_pcg_with_the_block_coloured_ssor_preconditioner(name):
    A = poisson2d(14) if name == "poisson2d" else random_spd(150, 0.04, 3)
    n = A.shape[0]
    rng = np.random.default_rng(4)
    b, x0 = rng.standard_normal(n), rng.standard_normal(n)
    nodes = {"a": 1, "b": 2}
    order = sweep_order(plan(A, nodes, 6))  # --blocks: blocks, not pipelined strips
    with workers(nodes) as ex:
        for its in (1, 6, 15):
            res = solve(
                A, b, ex, x0=x0, method="cg-ssor", omega=1.4, rtol=0.0, maxiter=its, blocks=6
            )
            assert res.extra["order"] == "coloured"
            want = reference_pcg(A, b, x0, 1.4, order, its)
            assert res.reason == "maxiter" and res.iterations == its
            np.testing.assert_allclose(res.x, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())


@pytest.mark.parametrize("name", ["poisson2d", "poisson3d"])
def test_pipelined_strips_give_the_local_solvers_iterates(name):
    """A grid in natural order splits into strips that sweep as a pipeline: the cluster's CG is
    then the local solver's, on 3 CPUs: the same omega rule (estimated on the workers: to 2
    digits) and, with that omega, the same iterates to rounding."""
    A = poisson2d(23) if name == "poisson2d" else poisson3d(9)
    n = A.shape[0]
    rng = np.random.default_rng(8)
    b, x0 = rng.standard_normal(n), rng.standard_normal(n)
    with workers({"a": 1, "b": 2}) as ex:
        for its in (1, 7, 19):
            want = local_solve(A, b, x0=x0, method="cg-ssor", rtol=0.0, maxiter=its)
            res = solve(A, b, ex, x0=x0, method="cg-ssor", rtol=0.0, maxiter=its, omega=want.omega)
            assert res.extra["order"] == "pipelined" and res.extra["blocks"] == 3
            assert res.iterations == want.iterations == its
            np.testing.assert_allclose(res.x, want.x, rtol=1e-12, atol=1e-12 * np.abs(want.x).max())
        res = solve(A, b, ex, method="cg-ssor", rtol=1e-8)
        want = local_solve(A, b, method="cg-ssor", rtol=1e-8)
    assert res.reason == want.reason == "rtol" and abs(res.iterations - want.iterations) <= 1
    assert round(res.omega, 2) == pytest.approx(round(want.omega, 2), abs=0.011)


SYSTEMS = {
    "poisson2d": lambda: poisson2d(30),
    "poisson3d": lambda: poisson3d(9),
    "anisotropic": lambda: anisotropic2d(24),
    "random-irregular": lambda: random_spd(500, 0.01, 17),
    "dense": lambda: dense_spd(70, 8),
}


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_converges_to_scipys_solutions(name):
    A = SYSTEMS[name]()
    n = A.shape[0]
    b = np.random.default_rng(6).standard_normal(n)
    direct = spla.spsolve(sp.csc_matrix(A), b) if sp.issparse(A) else np.linalg.solve(A, b)
    by_cg, info = spla.cg(A, b, rtol=1e-10, maxiter=20 * n)
    assert info == 0
    with workers({"n1": 1, "n2": 1, "n3": 2}) as ex:
        res = solve(A, b, ex, method="cg-ssor", rtol=1e-10, maxiter=5000)
    assert res.converged and res.reason == "rtol" and res.method == "cg-ssor"
    assert np.linalg.norm(b - A @ res.x) <= 1e-10 * np.linalg.norm(b) * (1 + 1e-6)
    # error <= cond(A) * rtol; these systems have cond < 1e4
    for want in (direct, by_cg):
        np.testing.assert_allclose(res.x, want, atol=1e-5 * np.abs(want).max())
    assert res.omega_source == "estimated" and "lambda_min" in res.extra
    rule = choose_ssor_omega(A, None)[0]
    # grids in natural order sweep as pipelined strips (one machine's order, the local rule);
    # other blocks are coloured, and omega capped where a colour holds several blocks (not for
    # dense A: one colour per block)
    pipelined = res.extra["order"] == "pipelined"
    assert pipelined == (name in ("poisson2d", "poisson3d"))
    parallel = not pipelined and res.extra["blocks"] > res.extra["colours"]
    expect = min(rule, BLOCK_COLOURED_SSOR_OMEGA_MAX) if parallel else rule
    assert round(res.omega, 2) == pytest.approx(
        round(expect, 2), abs=0.011
    )  # the workers' estimate
    assert pipelined or parallel == (name != "dense")
    assert (res.extra["colours"] >= 2 or pipelined) and res.extra["nodes"] == 3
    # CG takes far fewer iterations than SOR sweeps: only a few rounds, each ending in a check
    assert res.extra["rounds"]["iterate"] <= len(res.residuals)


def test_a_killed_node_mid_solve_restarts_cg_and_the_answer_is_still_right():
    A = poisson2d(40)
    b = np.ones(A.shape[0])
    with workers({"n1": 1, "n2": 1, "n3": 1}, processes=True) as ex:

        def progress(iteration, residual):
            if iteration >= 10 and "n2" in ex.nodes():
                ex.kill("n2")  # between rounds; the next round finds it gone

        res = solve(
            A, b, ex, method="cg-ssor", omega=1.5, rtol=1e-10, check_every=5, callback=progress
        )
    assert res.converged and res.reason == "rtol"
    np.testing.assert_allclose(res.x, spla.spsolve(sp.csc_matrix(A), b), rtol=1e-7)
    kinds = [ev["event"] for ev in res.extra["events"]]
    assert kinds.count("node_lost") == 1 and kinds.count("cg_restart") == 1
    moved = [ev for ev in res.extra["events"] if ev["event"] == "block_moved"]
    assert moved and all(ev["source"] == "n2" and ev["target"] in ("n1", "n3") for ev in moved)


def test_a_node_lost_at_the_final_gather_restarts_cg_and_says_so():
    A = poisson2d(16)
    b = np.ones(A.shape[0])
    kw = {"method": "cg-ssor", "omega": 1.5, "rtol": 1e-10, "check_every": 2}
    with workers({"a": 1, "b": 1}, processes=True) as ex:

        def progress(iteration, residual):
            if residual <= kw["rtol"] and "b" in ex.nodes():
                ex.kill("b")  # the next thing the driver does is gather x

        res = solve(A, b, ex, **kw, callback=progress)
    kinds = [ev["event"] for ev in res.extra["events"]]
    # the moved blocks hold the x they were loaded with: CG goes on from the gathered x in a
    # new wiring, which restarts it
    assert kinds.count("node_lost") == 1 and "recheck" in kinds
    assert kinds.count("cg_restart") == 1 and kinds.index("cg_restart") > kinds.index("recheck")
    assert res.converged and np.linalg.norm(b - A @ res.x) <= 1e-10 * np.linalg.norm(b)


def test_stopping_reasons_and_bad_options():
    A = poisson2d(12)
    b = np.ones(144)
    with workers({"a": 1, "b": 1}) as ex:
        res = solve(A, b, ex, method="cg-ssor", omega=1.5, rtol=1e-14, maxiter=7)
        assert res.reason == "maxiter" and res.iterations == 7 and not res.converged
        zero = solve(A, np.zeros(144), ex, method="cg-ssor")
        assert zero.converged and zero.iterations == 0 and not zero.x.any()
        # symmetric, positive diagonal, indefinite: p'Ap <= 0 ends CG
        bad = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        res = solve(bad, np.array([1.0, -1.0, 0.5]), ex, method="cg-ssor", omega=1.0)
        assert res.reason == "diverged" and not res.converged
        with pytest.raises(InputError, match="inner-sweeps"):
            solve(A, b, ex, method="cg-ssor", inner_sweeps=2)


def test_the_report_has_sors_fields_and_the_method():
    A = poisson2d(16)
    with workers({"a": 1, "b": 1}) as ex:
        sor = solve(A, np.ones(256), ex, omega=1.5, rtol=1e-6).to_report()
        cg = solve(A, np.ones(256), ex, method="cg-ssor", omega=1.5, rtol=1e-6).to_report()
    assert set(cg) == set(sor) and cg["method"] == "cg-ssor" and sor["method"] == "sor"
    assert cg["iterations"] < sor["iterations"] and cg["converged"]
