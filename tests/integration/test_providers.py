"""The same user-facing checks on a cluster of each provider: one on this machine's engine
(two nodes) and one across the two hosts of a simulated lab (tests/lab; h1 over tcp:// with
TLS, h2 over ssh://): `up`, `status --json`, a solve that scipy's spsolve agrees with (from
Python and from the CLI, each by the cluster's name), the dashboard's feed of those solves,
`logs`, and a `down` that leaves nothing on any engine (no containers, networks or volumes,
no packet filter chain on any host).

Each cluster comes up once (module-scoped) and the tests of one provider run in order, `down`
last; the names are provider-<random>.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import docker
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import sorctl
from sorctl.cluster import material
from sorctl.dashboard import data
from sorctl.names import LABEL_CLUSTER
from tests import lab as simlab
from tests.systems import poisson2d

pytestmark = pytest.mark.timeout(900)

RTOL = 1e-8


@dataclass
class Deployed:
    """A cluster that `sorctl up` made, and where to look for what it left."""

    kind: str  # engine | hosts
    name: str
    env: dict[str, str]  # for the CLI and this process: SORCTL_HOME (and the lab's HOME, TLS)
    engines: list[docker.DockerClient]  # every engine the cluster has anything on
    nodes: set[str]  # the nodes' addresses
    rules: Callable[[], str] = lambda: ""  # every host's `iptables -S`
    solves: list[str] = field(default_factory=list)  # feed ids of the solves made here


def sorctl_cli(deployed: Deployed, *args: str, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **deployed.env},
    )  # fmt: skip


@pytest.fixture(scope="module")
def lab():
    yield from simlab.fixture_lab("provider-lab", hosts=(("h1", "a"), ("h2", "a")))


def _engine_cluster(docker_client, home) -> tuple[Deployed, list[str]]:
    from sorctl.engine.images import require_images

    require_images(docker_client, ["node", "scheduler", "client"])
    deployed = Deployed("engine", f"provider-{secrets.token_hex(2)}", {"SORCTL_HOME": str(home)},
                        [docker_client], set())  # fmt: skip
    return deployed, ["--nodes", "2"]


def _hosts_cluster(lab, home) -> tuple[Deployed, list[str]]:
    h1, h2 = lab.hosts
    env = {"HOME": str(lab.ssh_home), "DOCKER_CERT_PATH": str(lab.dir), "SORCTL_HOME": str(home)}

    def rules() -> str:
        outer = docker.from_env()
        return "".join(outer.containers.get(h.container).exec_run(["iptables", "-S"])[1].decode()
                       for h in lab.hosts)  # fmt: skip

    engines = [lab.client(h) for h in lab.hosts]
    name = f"provider-{secrets.token_hex(2)}"
    deployed = Deployed("hosts", name, env, engines, {h1.address, h2.address}, rules)
    return deployed, ["--host", h1.tcp, "--host", h2.ssh]


@pytest.fixture(scope="module", params=["engine", "hosts"])
def deployed(request, docker_client, tmp_path_factory):
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    if request.param == "engine":
        made, args = _engine_cluster(docker_client, home)
    else:
        made, args = _hosts_cluster(request.getfixturevalue("lab"), home)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in made.env.items():  # this process's API calls see what the CLI sees
            mp.setenv(key, value)
        try:
            up = sorctl_cli(made, "up", "--name", made.name, *args)
            assert up.returncode == 0, up.stderr
            if made.kind == "engine":
                info = sorctl.Cluster(made.name).info()
                made.nodes = {c.address for c in info.nodes}
            yield made
        finally:
            sorctl_cli(made, "down", "--name", made.name, timeout=180)


def counted(entry: dict) -> set[str]:
    """The node addresses the scheduler counts with CPUs, from a `status --json` object (one
    engine: a list of nodes; across hosts: address -> CPUs)."""
    nodes = entry["nodes"]
    if isinstance(nodes, dict):
        return {a for a, cpus in nodes.items() if cpus >= 1}
    return {n["address"] for n in nodes if n["discovered"] and n["scheduler_cpus"] >= 1}


def test_status_json_counts_every_node_and_is_the_clusters_own(deployed):
    st = sorctl_cli(deployed, "status", "--name", deployed.name, "--json")
    assert st.returncode == 0, st.stderr
    [entry] = json.loads(st.stdout)["clusters"]
    assert entry["name"] == deployed.name
    assert len(deployed.nodes) == 2 and counted(entry) == deployed.nodes, entry
    if deployed.kind == "hosts":
        assert [h["reachable"] for h in entry["hosts"]] == [True, True], entry
        assert f"sorctl:{deployed.name}" in deployed.rules()  # each host's packet filter chain
    # from Python, one Cluster class whichever provider holds it
    cluster = sorctl.Cluster(deployed.name)
    assert cluster.across_hosts is (deployed.kind == "hosts")
    assert counted(cluster.status().to_dict()) == deployed.nodes
    # and listed without --name (the engine may hold others' clusters too)
    every = json.loads(sorctl_cli(deployed, "status", "--json").stdout)["clusters"]
    assert [c["name"] for c in every].count(deployed.name) == 1


def _right(A, b, x) -> None:
    want = spla.spsolve(sp.csc_matrix(A), b)
    assert np.linalg.norm(b - A @ x) <= RTOL * np.linalg.norm(b) * (1 + 1e-6)
    assert np.abs(x - want).max() <= 1e4 * RTOL * np.abs(want).max()


def test_a_solve_by_the_clusters_name_is_right_from_python_and_from_the_cli(deployed, tmp_path):
    from sorctl.solver import io as sio

    A = poisson2d(30)
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    before = {row["id"] for row in data.solves()}
    res = sorctl.solve(A, b, cluster=deployed.name, rtol=RTOL)
    assert res.converged and res.backend == f"cluster:{deployed.name}", res.reason
    assert res.extra["nodes"] == 2
    _right(A, b, res.x)

    sio.save_system(tmp_path / "sys.npz", A, b, None)
    r = sorctl_cli(deployed, "solve", str(tmp_path / "sys.npz"), "--cluster", deployed.name,
                   "--rtol", str(RTOL), "-o", str(tmp_path / "x.npz"), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["converged"] and report["nodes"] == 2, report
    _right(A, b, np.load(tmp_path / "x.npz")["x"])
    deployed.solves = [row["id"] for row in data.solves() if row["id"] not in before]


def test_the_dashboard_feed_shows_each_solve(deployed):
    assert len(deployed.solves) == 2, "the solve test made no feeds"
    rows = {row["id"]: row for row in data.solves()}
    for feed_id in deployed.solves:
        row = rows[feed_id]
        assert row["cluster"] == deployed.name and row["state"] == "done", row
        assert row["backend"] == f"cluster:{deployed.name}", row
        kinds = [rec["type"] for rec in data.solve_records(feed_id, 0)["records"]]  # type: ignore[index]
        assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds, kinds


def test_logs_of_a_role_and_of_one_container(deployed):
    r = sorctl_cli(deployed, "logs", "scheduler", "--name", deployed.name, "--tail", "20")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(ln.startswith(f"{deployed.name}-scheduler | ") for ln in lines), lines
    got = list(sorctl.Cluster(deployed.name).logs("node-1", tail=20))
    assert got and {c for c, _ in got} == {f"{deployed.name}-node-1"}, got
    bad = sorctl_cli(deployed, "logs", "nosuch", "--name", deployed.name)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_down_leaves_nothing_on_any_engine(deployed):
    r = sorctl_cli(deployed, "down", "--name", deployed.name)
    assert r.returncode == 0, r.stderr
    f = {"label": f"{LABEL_CLUSTER}={deployed.name}"}
    for client in deployed.engines:
        left = [c.name for c in client.containers.list(all=True, filters=f)]
        left += [n.name for n in client.networks.list(filters=f)]
        left += [v.name for v in client.volumes.list(filters=f)]
        assert left == [], left
    assert f"sorctl:{deployed.name}" not in deployed.rules()
    assert not material.cluster_dir(deployed.name).exists()
    with pytest.raises(sorctl.ClusterError):
        sorctl.Cluster(deployed.name)
    again = sorctl_cli(deployed, "down", "--name", deployed.name)
    assert again.returncode == 0 and "nothing to remove" in again.stderr, again.stderr
