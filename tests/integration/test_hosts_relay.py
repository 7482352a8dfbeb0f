"""`sorctl up --host ... --relay --relay-host ...` in the simulated lab: three hosts over two
subnets, the scheduler (and a node) on h1, a node on h2 and a relay alone on h3; h2 and h3
share the subnet behind the router. h2's node is told nothing: only the relay finds it.

A lab of its own (its hosts are not the other tests' layout), so in a module of its own: one
lab at a time.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from tests import lab as simlab
from tests.integration.test_hosts import (
    lab_env,
    labelled_everywhere,
    members_file,
    rules_on,
    scheduler_counts,
    solve_cmd,
    sorctl,
    wait_for,
)
from tests.systems import poisson2d

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def lab():
    yield from simlab.fixture_lab("mh-rl", hosts=(("h1", "a"), ("h2", "b"), ("h3", "b")))


def test_relay_finds_the_other_subnet_and_a_restarted_scheduler_finds_it_again(lab, tmp_path):
    env, name = lab_env(lab, tmp_path), "mh-r"
    h1, h2, h3 = lab.hosts
    a1, a2, a3 = h1.address, h2.address, h3.address
    up = sorctl("up", "--name", name, "--host", h1.tcp, "--host", h2.ssh, "--relay",
                "--relay-host", h3.tcp, env=env)  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert f"relays {h3.tcp}={a3}" in up.stdout, up.stdout
        data = json.loads(sorctl("status", "--name", name, "--json", env=env).stdout)
        cluster = data["clusters"][0]
        assert set(cluster["nodes"]) == {a1, a2} and all(c >= 1 for c in cluster["nodes"].values())
        relay_host = next(h for h in cluster["hosts"] if h["endpoint"] == h3.tcp)
        assert [c["role"] for c in relay_host["containers"]] == ["relay"], relay_host
        assert any("DROP" in rule for rule in relay_host["rules"]), relay_host
        # h2's node is told nothing and listed nowhere: the relay is what finds it
        node2 = lab.client(h2).containers.get(f"{name}-node-2")
        assert not [e for e in node2.attrs["Config"]["Env"] if e.startswith("SORCTL_SCHEDULER=")]
        assert members_file(lab, name).split() == [a1, a3]

        # A scheduler restart: every node counted again, sorctl touching nothing.
        sched = lab.client(h1).containers.get(f"{name}-scheduler")
        since = time.time()
        sched.restart(timeout=5)
        wait_for("every node counted after the restart",
                 lambda: set(scheduler_counts(lab, name, since)) == {a1, a2})  # fmt: skip

        # Without the relay the other subnet's node is not found...
        relay = lab.client(h3).containers.get(f"{name}-relay-1")
        relay.stop(timeout=5)
        since = time.time()
        sched.restart(timeout=5)
        wait_for("h1's node after the restart", lambda: a1 in scheduler_counts(lab, name, since))
        deadline = time.monotonic() + 8  # several discovery rounds: h2 stays out
        while time.monotonic() < deadline:
            assert a2 not in scheduler_counts(lab, name, since)
            time.sleep(0.5)
        # ...and the relay, started again, brings it (it announces itself to the scheduler).
        relay.start()
        wait_for("h2's node through the relay", lambda: a2 in scheduler_counts(lab, name, since))

        # A solve uses the node found through the relay: cg-ssor on a grid, pipelined strips
        # on h1 and h2, the answer checked against scipy's.
        A = poisson2d(40)
        b = np.random.default_rng(9).standard_normal(A.shape[0])
        code, out, err, x = solve_cmd(
            name, env, A, b, tmp_path, "--method", "cg-ssor", "--rtol", "1e-9"
        )
        assert code == 0, err
        report = json.loads(out)
        assert report["converged"] and report["nodes"] == 2 and report["order"] == "pipelined"
        assert {slot.split("#")[0] for slot in report["workers"]} == {a1, a2}  # a worker per CPU
        want = spla.spsolve(sp.csc_matrix(A), b)
        assert np.abs(x - want).max() <= 1e-5 * np.abs(want).max()
    finally:
        down = sorctl("down", "--name", name, env=env)
    assert down.returncode == 0, down.stderr
    assert labelled_everywhere(lab, name) == []
    for host in lab.hosts:
        assert f"sorctl:{name}" not in rules_on(host)
