"""The scheduler's own table of nodes (images/run-daemon.py publishes it in the scheduler
container): what `up`, `scale` and `status` read instead of the scheduler's rotating log.

Clusters here are named db<random> and taken down by the fixture, even when a test fails.
"""

from __future__ import annotations

import secrets

import pytest

from sorctl import api
from sorctl.cluster import material
from sorctl.engine import lifecycle, observe
from sorctl.errors import ClusterError

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cluster(docker_client, tmp_path_factory):
    from sorctl.engine.images import require_images

    require_images(docker_client, ["scheduler", "node", "relay", "router"])
    name = f"db{secrets.token_hex(3)}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SORCTL_HOME", str(tmp_path_factory.mktemp("home")))
        try:
            yield api.Cluster.up(name, nodes=2, timeout=120)
        finally:
            lifecycle.down(docker_client, name)


def test_the_table_lists_each_node_with_its_cpus(cluster, docker_client):
    info = cluster.info()
    view = observe.scheduler_view(docker_client, info)
    assert view.nodes == {c.address: 1 for c in info.nodes}
    assert all(view.since[c.address] > 0 for c in info.nodes)
    status = cluster.status()
    assert status.scheduler_cpus == 2 and all(n["discovered"] for n in status.nodes)


def test_a_node_with_another_secret_is_named_with_the_hint(cluster, docker_client):
    # the host's copy of the secret changes, so the node `scale` adds gets another one
    secret = material.load(cluster.name).secret_file
    good = secret.read_bytes()
    secret.write_bytes(secrets.token_hex(32).encode())
    try:
        with pytest.raises(ClusterError) as err:
            cluster.scale(3, timeout=25)
    finally:
        secret.write_bytes(good)
    message = str(err.value)
    assert f"{cluster.name}-node-3" in message and "(secret mismatch)" in message
    # the nodes it had are still counted
    view = observe.scheduler_view(docker_client, cluster.info())
    assert sum(view.nodes.values()) >= 2
