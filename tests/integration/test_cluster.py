"""sorctl up / status / logs / scale / down against real containers and real dispy.

Every dispy process (daemons and the test's own SharedJobCluster client) runs in a container
on the cluster's own networks. Cluster names start with "ct" plus a random suffix; fixtures
remove them even when a test fails.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace

import pytest

from sorctl.cluster import material
from sorctl.cluster.plan import Shape
from sorctl.engine import apply, lifecycle, observe
from sorctl.errors import ClusterError, ImageError
from sorctl.names import LABEL_CLUSTER

pytestmark = pytest.mark.timeout(300)

# The relay layout under test, and the same layout with its relays left out (the negative).
RELAY_SHAPE = Shape(nodes=4, relay=True, subnets=2)

# A user's own dispy program: SharedJobCluster through the scheduler, every node used.
USER_PROGRAM = r"""
import json, socket, sys, time
import dispy

def setup():
    global ready
    ready = 1
    return 0

def compute(i):
    import socket, time
    time.sleep(0.5)
    return socket.gethostname()

sched, want = sys.argv[1], int(sys.argv[2])
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
probe.connect((sched, 9702))
me = probe.getsockname()[0]
secret = open("/run/sorctl/secret").read().strip()
tls = {}
if len(sys.argv) > 3:  # dispy's TLS model: the shared certificate is also the CA
    tls = {"certfile": "/run/sorctl/cert.pem", "keyfile": "/run/sorctl/key.pem"}
cluster = dispy.SharedJobCluster(compute, setup=setup, scheduler_host=sched, ip_addr=me,
                                 client_port=0, secret=secret, recover_file="/tmp/recover",
                                 **tls)
def nodes():  # status() also lists the scheduler itself
    return [n for n in cluster.status().nodes if n.update_time > 0 and n.ip_addr != sched]

deadline = time.time() + 60
while time.time() < deadline:
    if len(nodes()) >= want:
        break
    time.sleep(0.2)
jobs = [cluster.submit(i) for i in range(2 * want)]
hosts = []
for job in jobs:
    job.finish.wait(60)
    hosts.append(job.result)
out = {"nodes": sorted((n.ip_addr, n.cpus) for n in nodes()), "hosts": hosts}
cluster.close()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A private SORCTL_HOME for the secrets of the test clusters."""
    path = tmp_path_factory.mktemp("sorctl-home")
    old = os.environ.get("SORCTL_HOME")
    os.environ["SORCTL_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SORCTL_HOME", None)
    else:
        os.environ["SORCTL_HOME"] = old


@pytest.fixture(scope="module")
def engine(docker_client, home):
    from sorctl.engine import images

    try:
        images.require_images(docker_client, ["scheduler", "node", "relay", "router", "client"])
    except ImageError as exc:
        pytest.skip(f"images missing: {exc} (run `sorctl images build`)")
    return docker_client


def new_name() -> str:
    return f"ct{secrets.token_hex(3)}"


def labelled(client, name: str) -> list[str]:
    f = {"label": f"{LABEL_CLUSTER}={name}"}
    return (
        [row["Names"][0].lstrip("/") for row in client.api.containers(all=True, filters=f)]
        + [n.name for n in client.networks.list(filters=f)]
        + [v.name for v in client.volumes.list(filters=f)]
    )


@pytest.fixture
def names(engine):
    """Hands out cluster names and takes every one of them down afterwards."""
    handed: list[str] = []

    def make() -> str:
        handed.append(new_name())
        return handed[-1]

    yield make
    for n in handed:
        lifecycle.down(engine, n)


def sorctl(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )


def run_user_program(client, info: observe.ClusterInfo, want: int) -> dict:
    """Run USER_PROGRAM in a client container on the cluster's client network."""
    from sorctl.engine import images

    name = f"{info.name}-client-{secrets.token_hex(2)}"
    env = {**info.client_env(), "SORCTL_SECRET_FILE": "/run/sorctl/secret"}
    client.api.create_container(
        images.image_ref("client"),
        name=name,
        command=["python3", "/run/sorctl/prog.py", info.scheduler_address, str(want)]
        + (["tls"] if info.tls else []),
        environment=env,
        labels={LABEL_CLUSTER: info.name, "org.sorctl.role": "client"},
        host_config=client.api.create_host_config(cap_add=["NET_ADMIN"]),
        networking_config=client.api.create_networking_config(
            {info.network: client.api.create_endpoint_config()}
        ),
    )
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            files = {
                "secret": info.secret_file,
                "cert.pem": info.cert_file,
                "key.pem": info.key_file,
            }
            for fname, data in [
                *((f"sorctl/{k}", p.read_bytes()) for k, p in files.items() if p),
                ("sorctl/prog.py", USER_PROGRAM.encode()),
            ]:
                ti = tarfile.TarInfo(fname)
                ti.size, ti.mode = len(data), 0o444
                tar.addfile(ti, io.BytesIO(data))
        client.api.put_archive(name, "/run", buf.getvalue())
        client.api.start(name)
        code = client.api.wait(name, timeout=150)["StatusCode"]
        logs = client.api.logs(name).decode(errors="replace")
    finally:
        client.api.remove_container(name, force=True)
    result = [line for line in logs.splitlines() if line.startswith("RESULT ")]
    assert code == 0 and result, f"client program failed ({code}):\n{logs[-3000:]}"
    return json.loads(result[0][len("RESULT ") :])


def counted(client, name: str) -> dict[str, int]:
    info = observe.find_cluster(client, name)
    assert info is not None
    return observe.scheduler_view(client, info).nodes


# ---------------------------------------------------------------------------------------------
# Single network


@pytest.fixture(scope="module")
def single(engine):
    name = new_name()
    try:
        lifecycle.up(engine, name, Shape(nodes=4, cpus_per_node=2), timeout=90)
        yield name
    finally:
        lifecycle.down(engine, name)


def test_single_network_scheduler_counts_four_nodes_with_their_cpus(engine, single):
    info = observe.find_cluster(engine, single)
    view = counted(engine, single)
    assert {n.address: 2 for n in info.nodes} == view
    assert len(info.nodes) == 4 and info.routes == ""


def test_status_json_fields(engine, single):
    res = sorctl("status", "--name", single, "--json")
    assert res.returncode == 0, res.stderr
    (data,) = json.loads(res.stdout)["clusters"]
    assert data["name"] == single
    assert data["shape"] == {
        "nodes": 4,
        "relay": False,
        "subnets": 1,
        "cpus_per_node": 2,
        "tls": False,
    }
    conn = data["connect"]
    assert conn["scheduler_port"] == 9702 and conn["network"] == f"{single}-net"
    assert conn["scheduler_address"].startswith(data["networks"][0]["subnet"].rsplit(".", 1)[0])
    assert {c["role"] for c in data["containers"]} == {"scheduler", "node"}
    for c in data["containers"]:
        assert c["state"] == "running" and c["address"] and c["networks"]
        assert set(c) >= {"name", "role", "state", "health", "address", "networks"}
    assert [n["scheduler_cpus"] for n in data["nodes"]] == [2, 2, 2, 2]
    assert data["scheduler_cpus"] == 8
    assert json.loads(sorctl("status", "--json").stdout)["clusters"]  # all clusters: a list


def test_tls_cluster_runs_jobs(engine, names):
    name = names()
    lifecycle.up(engine, name, Shape(nodes=2, tls=True), timeout=90)
    info = observe.find_cluster(engine, name)
    assert info.tls and info.cert_file.is_file()
    out = run_user_program(engine, info, want=2)
    assert set(out["hosts"]) == {n.name for n in info.nodes}


def test_logs_follow_streams_until_stopped(engine, single):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sorctl.cli.main",
            "logs",
            "node",
            "--name",
            single,
            "-f",
            "--tail",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"{single}-node-")
        assert proc.poll() is None  # still following
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 130


def test_up_twice_same_shape_is_a_no_op_and_other_shape_an_error(engine, single):
    before = {
        c.name: c.id for c in engine.containers.list(filters={"label": f"{LABEL_CLUSTER}={single}"})
    }
    again = lifecycle.up(engine, single, Shape(nodes=4, cpus_per_node=2))
    assert again.created is False
    after = {
        c.name: c.id for c in engine.containers.list(filters={"label": f"{LABEL_CLUSTER}={single}"})
    }
    assert after == before
    res = sorctl("up", "--name", single, "--nodes", "3")
    assert res.returncode == 1
    assert "already exists" in res.stderr and "Traceback" not in res.stderr


def test_logs_by_role(engine, single):
    res = sorctl("logs", "scheduler", "--name", single)
    assert res.returncode == 0
    assert "Discovered" in res.stdout and res.stdout.startswith(f"{single}-scheduler | ")
    bad = sorctl("logs", "nosuch", "--name", single)
    assert bad.returncode == 2 and "no container" in bad.stderr


def test_remove_cluster_leaves_other_clusters_alone(engine, single, names):
    other = names()
    assert apply.remove_cluster(engine, other) == {"containers": 0, "networks": 0, "volumes": 0}
    assert observe.find_cluster(engine, single) is not None


# ---------------------------------------------------------------------------------------------
# Relay layout


@pytest.fixture(scope="module")
def relayed(engine):
    name = new_name()
    try:
        lifecycle.up(engine, name, RELAY_SHAPE, timeout=90)
        yield name
    finally:
        lifecycle.down(engine, name)


def test_relay_layout_nodes_found_through_the_relay(engine, relayed):
    info = observe.find_cluster(engine, relayed)
    assert info.network == f"{relayed}-lan" and info.routes
    remotes = {n.name for n in info.networks if n.role == "remote"}
    assert len(remotes) == 2
    # Nodes spread over both remote subnets, each node on one of them only.
    assert {next(iter(n.networks)) for n in info.nodes} == remotes
    assert all(len(n.networks) == 1 for n in info.nodes)
    # The scheduler was told no node address; it counts all of them anyway.
    sched = engine.containers.get(f"{relayed}-scheduler")
    assert not any(e.startswith("SORCTL_NODES=") for e in sched.attrs["Config"]["Env"])
    assert counted(engine, relayed) == {n.address: 1 for n in info.nodes}


def test_user_program_with_shared_job_cluster_runs_on_every_node(engine, relayed):
    info = observe.find_cluster(engine, relayed)
    out = run_user_program(engine, info, want=4)
    assert sorted(ip for ip, _ in out["nodes"]) == sorted(n.address for n in info.nodes)
    assert set(out["hosts"]) == {n.name for n in info.nodes}


def test_scale_grows_and_shrinks_through_the_relay(engine, relayed):
    assert lifecycle.scale(engine, relayed, 5, timeout=60) == (4, 5)
    info = observe.find_cluster(engine, relayed)
    assert len(info.nodes) == 5 and info.shape.nodes == 5
    assert info.nodes[-1].address in counted(engine, relayed)
    res = sorctl("scale", "--name", relayed, "--nodes", "4")
    assert res.returncode == 0, res.stderr
    assert [n.name for n in observe.find_cluster(engine, relayed).nodes] == [
        f"{relayed}-node-{i}" for i in range(1, 5)
    ]
    # node-5 again, at the address the scheduler still remembers ("rediscovered").
    assert lifecycle.scale(engine, relayed, 5, timeout=60) == (4, 5)
    assert lifecycle.scale(engine, relayed, 4, timeout=60) == (5, 4)


def test_killing_the_relays_keeps_the_nodes_already_found(engine, relayed):
    info = observe.find_cluster(engine, relayed)
    for relay in info.role("relay"):
        engine.containers.get(relay.name).kill()
    out = run_user_program(engine, info, want=4)
    assert set(out["hosts"]) == {n.name for n in info.nodes}


# ---------------------------------------------------------------------------------------------
# Failure paths and down


def test_without_relays_nothing_is_discovered_and_up_rolls_back(engine, names):
    name = names()
    with pytest.raises(ClusterError) as err:
        lifecycle.up(engine, name, RELAY_SHAPE, timeout=10, relay_daemons=False)
    message = str(err.value)
    assert "counts 0 of 4 node(s)" in message
    assert all(f"{name}-node-{i}" in message for i in range(1, 5))
    assert "last log lines" in message
    assert labelled(engine, name) == []
    assert not material.cluster_dir(name).exists()


def test_timeout_names_missing_nodes_and_keep_on_failure_keeps_them(engine, names):
    name = names()
    res = sorctl("up", "--name", name, "--nodes", "2", "--timeout", "0", "--keep-on-failure")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "not ready" in res.stderr and f"{name}-node-1" in res.stderr
    assert f"{name}-scheduler" in labelled(engine, name)  # kept for inspection
    res = sorctl("down", "--name", name)
    assert res.returncode == 0 and "removed" in res.stdout
    assert labelled(engine, name) == []


def test_a_container_that_exits_fails_up_at_once_with_its_last_lines(engine, names):
    name = names()
    plan = lifecycle.plan_for(engine, name, Shape(nodes=2))
    broken = f"{name}-node-2"
    plan = replace(
        plan,
        containers=tuple(
            replace(c, env={**c.env, "SORCTL_ROUTES": "garbage"}) if c.name == broken else c
            for c in plan.containers
        ),
    )
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=f"(?s){broken} exited.*bad SORCTL_ROUTES"):
        apply.bring_up(
            engine,
            plan,
            material.create(name, tls=False),
            timeout=60,
            reporter=apply.Reporter(),
            created=apply.Created(),
        )
    assert time.monotonic() - t0 < 30  # not the whole deadline


def test_interrupted_up_removes_what_it_created(engine, names):
    name = names()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sorctl.cli.main", "up", "--name", name, "--nodes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 60
    while not any(n.startswith(f"{name}-node") for n in labelled(engine, name)):
        assert proc.poll() is None and time.monotonic() < deadline, "up ended before Ctrl-C"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert labelled(engine, name) == []
    assert not material.cluster_dir(name).exists()


def test_down_removes_everything_labelled_even_half_deleted_and_nothing_is_a_note(engine, names):
    name = names()
    res = sorctl("up", "--name", name, "--nodes", "1", "--relay")
    assert res.returncode == 0, res.stderr
    assert f"{name}-lan" in res.stdout
    vol = engine.volumes.create(f"{name}-data", labels={LABEL_CLUSTER: name})
    assert vol.name in labelled(engine, name)
    # Half-deleted by hand: still found through its labels, and still removed whole.
    engine.containers.get(f"{name}-scheduler").remove(force=True)
    res = sorctl("status", "--name", name, "--json")
    (data,) = json.loads(res.stdout)["clusters"]
    assert data["shape"] is None and {c["role"] for c in data["containers"]} == {
        "node",
        "relay",
        "router",
    }
    t0 = time.monotonic()
    res = sorctl("down", "--name", name)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 60
    assert labelled(engine, name) == []
    assert not material.cluster_dir(name).exists()
    again = sorctl("down", "--name", name)
    assert again.returncode == 0 and "nothing to remove" in again.stderr
