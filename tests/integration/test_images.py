"""The images, with real Docker: each role starts alone and becomes healthy, a node answers on
its port, a JobCluster in a client container runs jobs that import the solver on a node (the
kernels loaded from the cache warmed at build time), and require_images refuses a stale image.
`sorctl images build` reports a line per role, a summary table and the full log's path, shows
a failing step's last lines, and leaves no untagged image behind.

Every container and network here is named `sorctl-imgtest-*` and removed, even on failure.
All dispy traffic stays on the test's own bridge network.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl import names
from sorctl.engine import images
from sorctl.engine.buildlog import log_dir
from sorctl.errors import BuildError, ImageError
from tests.cli_runner import run_cli

PREFIX = "sorctl-imgtest-"
TEST_LABEL = {"org.sorctl.test": "images"}


@pytest.fixture(scope="module")
def built(docker_client):
    """The role images of this sorctl version (scripts/test.sh builds them; unchanged roles
    are skipped, so this costs seconds when they are current)."""
    images.build(log=lambda line: None, client=docker_client)
    images.require_images(docker_client, images.ROLES)
    return docker_client


@pytest.fixture
def net(built):
    """A bridge network of the test's own, and a factory for containers on it
    (`run(role, suffix, files=None, **kwargs)`: files are put in before the container starts)."""
    client = built
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    network = client.networks.create(name, driver="bridge", labels=TEST_LABEL)
    started = []

    def run(role, suffix, files=None, **kwargs):
        container = client.containers.create(
            images.image_ref(role),
            name=f"{name}-{suffix}",
            network=name,
            labels=TEST_LABEL,
            detach=True,
            **kwargs,
        )
        started.append(container)
        for path, (text, mode) in (files or {}).items():
            put_file(container, path, text, mode)
        container.start()
        return container

    try:
        yield client, run, name
    finally:
        for container in started:
            try:
                container.remove(force=True)
            except Exception:
                pass
        network.remove()


def put_file(container, path: str, text: str, mode: int = 0o644) -> None:
    """Put one root-owned file into a container (before or after it starts). The top folder
    (/run, /tmp) exists already and is left as it is; folders below it are made."""
    data = text.encode()
    top, rest = path.lstrip("/").split("/", 1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            info = tarfile.TarInfo("/".join(parts[:depth]))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo(rest)
        info.size, info.mode = len(data), mode
        tar.addfile(info, io.BytesIO(data))
    assert container.put_archive(f"/{top}", buf.getvalue())


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory):
    """A throwaway self-signed certificate and key (dispy's TLS: one shared certificate)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a throwaway certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=sorctl-imgtest", "-keyout", str(folder / "key.pem"),
         "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return (folder / "cert.pem").read_text(), (folder / "key.pem").read_text()


def wait_for(predicate, what, timeout=90.0, every=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def health(container):
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status")


def wait_healthy(container):
    def check():
        status = health(container)
        if status == "unhealthy" or container.status == "exited":
            logs = container.logs().decode(errors="replace")[-2000:]
            raise AssertionError(f"{container.name} is {status}/{container.status}:\n{logs}")
        return status == "healthy"

    wait_for(check, f"{container.name} to become healthy")


def address(container, network_name):
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network_name]["IPAddress"]


def pid1(container) -> tuple[str, str]:
    """(uid line of /proc/1/status, command line of PID 1)."""
    code, out = container.exec_run(
        ["bash", "-c", "grep ^Uid: /proc/1/status; tr '\\0' ' ' </proc/1/cmdline"]
    )
    assert code == 0, out
    uid_line, cmdline = out.decode().splitlines()
    return uid_line, cmdline


@pytest.mark.parametrize("role", images.ROLES)
def test_each_role_alone_becomes_healthy_as_the_sorctl_user(net, role):
    client, run, _ = net
    container = run(role, role)
    wait_healthy(container)
    uid_line, cmdline = pid1(container)
    assert uid_line.split()[1:] == ["990"] * 4  # real, effective, saved, fs uid: sorctl
    image = client.images.get(images.image_ref(role))
    assert image.labels["org.sorctl.role"] == role
    assert image.labels["org.sorctl.version"] == images.sorctl_version()
    # the pinned packages it carries, each with its version (the router runs no Python program)
    pins = images.pins()
    carried = {name: image.labels.get(f"org.sorctl.{name}") for name in pins}
    if role == "router":
        assert set(carried.values()) == {None}
    else:
        assert carried["dispy"] == "4.15.2" and carried["pycos"] == "4.12.2"
        numeric = {name: carried[name] for name in ("numpy", "scipy", "numba")}
        want = (
            {n: pins[n] for n in numeric} if role in ("node", "client") else dict.fromkeys(numeric)
        )
        assert numeric == want
    assert len(image.labels["org.sorctl.inputs-hash"]) == 16
    assert container.labels["org.sorctl.role"] == role  # containers inherit the image labels
    if role in ("node", "scheduler", "relay"):
        assert "--daemon" in cmdline.split()
    if role == "node":
        assert {"--clean", "--dest_path_prefix"} <= set(cmdline.split())


def test_entrypoint_refuses_a_malformed_route(net):
    _, run, _ = net
    container = run("router", "badroute", environment={"SORCTL_ROUTES": "10.9.0.0/24 via"})
    wait_for(lambda: container.reload() or container.status == "exited", "the refusal")
    assert container.wait(timeout=10)["StatusCode"] != 0
    assert "bad SORCTL_ROUTES entry" in container.logs().decode()


def test_node_answers_on_its_port_with_its_configuration(net):
    _, run, network_name = net
    node = run("node", "node", environment={"SORCTL_CPUS": "1"})
    wait_healthy(node)
    node_ip = address(node, network_name)
    probe = run("client", "probe")
    code, out = probe.exec_run(
        ["python3", "-c", f"import socket; socket.create_connection(('{node_ip}', 9701), 5)"],
        user="sorctl",
    )
    assert code == 0, out.decode()
    _, cmdline = pid1(node)
    args = cmdline.split()
    assert args[args.index("--cpus") + 1] == "1"
    assert args[args.index("-i") + 1] == node_ip


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def secret_passed_privately(args: list[str], flags: str) -> bool:
    """The launcher gets the secret as a file of the daemon user's and the daemon flags that
    take it; the secret itself is on no command line."""
    where = args.index("--secret-file")
    return (
        "s3cret-imgtest" not in args
        and args[where + 1] == "/home/sorctl/private/secret"
        and args[where + 2] == flags
    )


def test_entrypoint_turns_the_environment_into_daemon_flags(net, tls_material):
    _, run, network_name = net
    peer = run("router", "peer")  # the only address the daemons are told to contact
    wait_healthy(peer)
    peer_ip = address(peer, network_name)
    cert, key = tls_material
    material = {  # as the CLI puts them: root-only files under /run/sorctl
        "/run/sorctl/secret": ("s3cret-imgtest", 0o600),
        "/run/sorctl/cert.pem": (cert, 0o600),
        "/run/sorctl/key.pem": (key, 0o600),
    }
    tls_env = {"SORCTL_CERTFILE": "/run/sorctl/cert.pem", "SORCTL_KEYFILE": "/run/sorctl/key.pem"}
    mine = "/home/sorctl/tls/cert.pem"
    scheduler = run("scheduler", "scheduler", files=material,
                    environment={**tls_env, "SORCTL_NODES": peer_ip})  # fmt: skip
    relay = run("relay", "relay", files=material,
                environment={**tls_env, "SORCTL_SCHEDULER": peer_ip})  # fmt: skip
    node = run("node", "node", files=material,
               environment={**tls_env, "SORCTL_SCHEDULER": peer_ip, "SORCTL_EXT_HOST": peer_ip,
                            "SORCTL_CPUS": "1"})  # fmt: skip
    for container in (scheduler, relay, node):
        wait_healthy(container)

    args = pid1(scheduler)[1].split()
    assert flag(args, "--node") == peer_ip
    assert secret_passed_privately(args, "--node_secret,--cluster_secret")
    assert flag(args, "--node_certfile") == flag(args, "--cluster_certfile") == mine
    assert flag(args, "-i") == address(scheduler, network_name)
    args = pid1(relay)[1].split()
    assert flag(args, "--scheduler_node") == peer_ip
    assert secret_passed_privately(args, "--secret") and flag(args, "--certfile") == mine
    args = pid1(node)[1].split()
    assert flag(args, "--scheduler_host") == peer_ip and flag(args, "--ext_host") == peer_ip
    assert secret_passed_privately(args, "--secret") and flag(args, "--keyfile").endswith("key.pem")
    # The daemon's own copies of root-only TLS files: its user's, and private.
    code, out = node.exec_run(["stat", "-c", "%u %a", mine, "/home/sorctl/tls/key.pem"])
    assert out.decode().split() == ["990", "600", "990", "600"], out


def test_entrypoint_adds_the_routes_then_drops_its_capabilities(net):
    _, run, network_name = net
    gateway = run("router", "gw")
    wait_healthy(gateway)
    via = address(gateway, network_name)
    routes = f"10.213.251.0/24 via {via}, 10.213.252.0/24 via {via}"
    member = run("router", "member", cap_add=["NET_ADMIN"], environment={"SORCTL_ROUTES": routes})
    wait_healthy(member)
    code, out = member.exec_run(["ip", "-4", "route"])
    table = out.decode()
    assert f"10.213.251.0/24 via {via}" in table and f"10.213.252.0/24 via {via}" in table
    code, out = member.exec_run(["grep", "^CapEff", "/proc/1/status"])
    assert out.decode().split()[1] == "0000000000000000"


JOB_PROGRAM = r"""
import json, sys
from sorctl.distributed import dispy_compat
dispy_compat.apply()
import dispy

def setup():
    # Imported once per node; jobs are forked from here and see it.
    global kernels
    from sorctl.solver import kernels
    return 0

def compute(n, omega, sweeps):
    import os
    from numba.core.dispatcher import Dispatcher
    import numpy as np
    import scipy.sparse as sp
    import sorctl.solver as solver
    from sorctl.solver.kernels import csr
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    b = np.arange(1.0, n + 1.0)
    x = np.zeros(n)
    kernels.sor_sweeps(A, b, x, omega, sweeps=sweeps)
    stats = {name: [obj.stats.cache_hits.total(), obj.stats.cache_misses.total()]
             for name, obj in vars(csr).items() if isinstance(obj, Dispatcher)}
    return {"host": os.uname().nodename, "solver": solver.__file__, "x": x.tolist(),
            "numba_cache": stats, "uid": os.getuid()}

node_ip = sys.argv[1]
tls = dict(zip(("secret", "certfile", "keyfile"), sys.argv[2:]))
host = open("/run/sorctl-host").read().strip()
cluster = dispy.JobCluster(compute, nodes=[node_ip], host=host, setup=setup,
                           pulse_interval=2, recover_file="/tmp/imgtest-recover", **tls)
try:
    jobs = [cluster.submit(n, 1.8, 400) for n in (8, 16, 24)]
    for job in jobs:
        if not job.finish.wait(120):
            print(json.dumps({"error": "job did not finish in 120 s"}))
            sys.exit(1)
        if job.status != dispy.DispyJob.Finished:
            print(json.dumps({"error": f"job status {job.status}: {job.exception}"}))
            sys.exit(1)
        print(json.dumps(job.result))
finally:
    cluster.close()
"""


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secret+tls"])
def test_jobcluster_in_a_client_runs_solver_jobs_on_a_node(net, tls_material, secure):
    _, run, network_name = net
    cert, key = tls_material
    files, env, extra = {}, {}, []
    if secure:
        files = {"/run/sorctl/secret": ("s3cret", 0o600), "/run/sorctl/cert.pem": (cert, 0o600),
                 "/run/sorctl/key.pem": (key, 0o600)}  # fmt: skip
        env = {"SORCTL_CERTFILE": "/run/sorctl/cert.pem", "SORCTL_KEYFILE": "/run/sorctl/key.pem"}
        extra = ["s3cret", "/tmp/cert.pem", "/tmp/key.pem"]
    node = run("node", "node", files=files, environment=env)
    wait_healthy(node)
    node_ip = address(node, network_name)
    client_box = run("client", "client", files={"/tmp/jobs.py": (JOB_PROGRAM, 0o644),
                                                 "/tmp/cert.pem": (cert, 0o644),
                                                 "/tmp/key.pem": (key, 0o644)})  # fmt: skip
    code, out = client_box.exec_run(
        ["timeout", "300", "python3", "/tmp/jobs.py", node_ip, *extra], user="sorctl"
    )
    text = out.decode(errors="replace")
    assert code == 0, text[-3000:]
    results = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(results) == 3, text[-3000:]
    node_hostname = node.attrs["Config"]["Hostname"]
    for n, result in zip((8, 16, 24), results, strict=True):
        assert result["host"] == node_hostname
        assert result["solver"].startswith("/opt/venv/lib/python3.11/site-packages/sorctl/solver/")
        assert result["uid"] == 990
        # The kernels came from the cache warmed at build time: hits, no compilation.
        used = {k: v for k, v in result["numba_cache"].items() if v != [0, 0]}
        assert used and all(hits > 0 and misses == 0 for hits, misses in used.values()), used
        # And they computed the right thing: SOR converged to scipy's direct solution.
        A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csc")
        expected = spla.spsolve(A, np.arange(1.0, n + 1.0))
        np.testing.assert_allclose(result["x"], expected, rtol=1e-8)


def test_require_images_refuses_missing_and_other_version_images(built):
    client = built
    version = "0.0.0-imgtest"
    with pytest.raises(ImageError, match=rf"sorctl-router:{version} is missing"):
        images.require_images(client, ["router"], version=version)
    # An image under this version's tag but built by another sorctl (its label says 9.9.9).
    dockerfile = f"FROM {images.image_ref('router')}\nLABEL org.sorctl.version=9.9.9\n"
    ref = images.image_ref("router", version)
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True)
    try:
        with pytest.raises(
            ImageError, match=r"sorctl-router:0.0.0-imgtest was built for sorctl 9.9.9"
        ):
            images.require_images(client, ["router"], version=version)
    finally:
        client.images.remove(ref)
    images.require_images(client, images.ROLES)  # the real ones pass


def test_a_rebuild_without_changes_skips_every_role(built):
    images.build(log=lambda line: None, client=built)  # takes in any edit made meanwhile
    results = images.build(log=lambda line: None, client=built)
    assert [r.action for r in results] == ["unchanged"] * len(images.ROLES)


def dangling_sorctl_images(client) -> list[str]:
    """Untagged, childless images a sorctl build made (the Dockerfile labels every one)."""
    found = client.images.list(filters={"dangling": True, "label": names.LABEL_BUILT_BY})
    return [image.short_id for image in found]


def test_a_build_leaves_no_untagged_image_and_keeps_the_venv_stages_as_cache(built):
    # `built` ran a build (of whatever changed); this one rebuilds router and node from the
    # cache, passing through every stage
    images.build(["router", "node"], force=True, log=lambda line: None, client=built)
    assert dangling_sorctl_images(built) == []
    for stage in names.CACHE_STAGES:
        cache = built.images.get(names.cache_ref(stage, images.sorctl_version()))
        assert cache.labels[names.LABEL_BUILT_BY] == "sorctl"


def test_the_build_command_reports_steps_a_table_and_the_full_log(built, capsys, monkeypatch):
    code, out, err = run_cli(["images", "build", "--role", "router", "--force"], capsys,
                             monkeypatch)  # fmt: skip
    assert code == 0, err
    # a line per role with its step count, then the table on stdout
    line = next(line for line in err.splitlines() if line.startswith("router "))
    assert re.search(r"built, (\d+) steps \((\d+) from cache\)", line), line
    assert re.search(r"│ router\s+│ sorctl-router:\S+\s+│ built\s+│ \d+\s+│ [\d.]+", out), out
    assert "Step " not in err  # the steps go to the log, not the terminal
    log = Path(re.search(r"^full log: (.+)$", err, re.M)[1])
    assert log.parent == log_dir() and log.is_file()
    text = log.read_text()
    assert re.search(r"router: Step 1/\d+ : ARG BASE_IMAGE", text)
    assert "router: Successfully tagged " + images.image_ref("router") in text
    # --verbose streams every line as it comes
    code, _, err = run_cli(["images", "build", "--role", "router", "--force", "--verbose"],
                           capsys, monkeypatch)  # fmt: skip
    assert code == 0 and re.search(r"^  router: Step 1/\d+ : ARG BASE_IMAGE", err, re.M), err
    assert dangling_sorctl_images(built) == []


@pytest.fixture
def failing_dockerfile(tmp_path, monkeypatch):
    """The image files, the router's stage made to fail at a RUN step that prints a line."""
    folder = tmp_path / "images"
    shutil.copytree(images.IMAGES, folder)
    dockerfile = folder / "Dockerfile"
    text = dockerfile.read_text()
    assert "FROM os AS router\n" in text
    dockerfile.write_text(
        text.replace("FROM os AS router\n", "FROM os AS router\nRUN echo about to fail; exit 7\n")
    )
    monkeypatch.setattr(images, "IMAGES", folder)


def test_a_failed_build_names_the_step_and_shows_its_last_lines(
    built, failing_dockerfile, capsys, monkeypatch
):
    before = built.images.get(images.image_ref("router")).id
    with pytest.raises(BuildError) as failed:
        images.build(["router"], log=lambda line: None, client=built)
    assert re.fullmatch(r"step \d+/\d+ \(RUN echo about to fail; exit 7\)", failed.value.step)
    assert failed.value.tail == ["about to fail"]
    assert "returned a non-zero code: 7" in str(failed.value)
    assert "about to fail" in Path(failed.value.log_path).read_text()
    # the CLI: the step and its lines above the one-line error, the exit code of a failure
    code, _, err = run_cli(["images", "build", "--role", "router"], capsys, monkeypatch)
    assert code == 1
    assert re.search(r"failed at step \d+/\d+ \(RUN echo about to fail; exit 7\); its last", err)
    assert "  | about to fail" in err
    assert err.rstrip().splitlines()[-1].startswith("sorctl: error: building sorctl-router:")
    assert built.images.get(images.image_ref("router")).id == before  # the old image stays
    assert dangling_sorctl_images(built) == []
