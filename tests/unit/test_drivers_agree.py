"""The local and the distributed driver share one monitoring path: the same options object, the
same stop reasons and record, and the same answer to Ctrl-C."""

from __future__ import annotations

import numpy as np
import pytest

from tests.drivers import cluster_solve, local_solve
from tests.systems import poisson2d
from tests.workers import workers


def interrupt_at_check(n: int):
    """A callback that presses Ctrl-C at the n-th residual check."""
    seen: list[int] = []

    def callback(iteration: int, residual: float) -> None:
        seen.append(iteration)
        if len(seen) == n:
            raise KeyboardInterrupt

    return callback


@pytest.fixture(scope="module")
def system():
    A = poisson2d(16)
    return A, np.ones(A.shape[0])


def test_ctrl_c_is_reason_interrupted_at_the_last_check_in_both_drivers(system):
    A, b = system
    options = dict(omega=1.5, rtol=1e-12, check_every=5)
    local = local_solve(A, b, callback=interrupt_at_check(3), **options)
    with workers({"a": 1, "b": 1}) as pool:
        dist = cluster_solve(A, b, pool, callback=interrupt_at_check(3), **options)
    for res in (local, dist):
        assert (res.reason, res.converged) == ("interrupted", False)
        assert res.extra["check_iterations"] == [0, 5, 10] and res.iterations == 10
        assert len(res.residuals) == 3 and res.residuals[1] < res.residuals[0]
    # the local iterate is the one last checked: its residual is the one recorded
    r = np.linalg.norm(b - A @ local.x) / np.linalg.norm(b)
    assert r == pytest.approx(local.residuals[-1], rel=1e-9)


@pytest.mark.parametrize("maxiter", [7, 20])
def test_maxiter_is_met_exactly_and_recorded_alike(system, maxiter):
    A, b = system
    options = dict(omega=1.5, rtol=0.0, maxiter=maxiter, check_every=5)
    local = local_solve(A, b, **options)
    with workers({"a": 1}) as pool:
        dist = cluster_solve(A, b, pool, **options)
    for res in (local, dist):
        assert (res.reason, res.iterations) == ("maxiter", maxiter)
        assert res.extra["check_iterations"] == sorted({*range(0, maxiter, 5), maxiter})
