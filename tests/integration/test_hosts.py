"""Other machines' Docker engines (`--host`), in the simulated lab (tests/lab): three engines in
containers on two subnets, each reached over tcp:// with TLS and over ssh://.

Nothing here uses the machine's own network namespace for dispy; the inner engines are the
only place with host networking.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sorctl.cluster.hosts import parse_host
from sorctl.engine.connect import TLSFiles, connect_host
from sorctl.engine.images import image_ref
from sorctl.errors import EngineError
from tests import lab as simlab

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def lab():
    yield from simlab.fixture_lab()


def sorctl(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "sorctl.cli.main", *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_every_host_answers_over_tls_and_over_ssh(lab, monkeypatch):
    for host in lab.hosts:
        assert connect_host(parse_host(host.tcp), lab.tls).info()["Name"] == host.name
    # paramiko reads ~/.ssh/config and ~/.ssh/known_hosts: the lab's, through HOME
    monkeypatch.setenv("HOME", str(lab.ssh_home))
    for host in lab.hosts:
        assert connect_host(parse_host(host.ssh)).info()["Name"] == host.name


def test_a_wrong_tls_certificate_is_a_one_line_error(lab, tmp_path):
    other = tmp_path / "other"
    simlab.make_ca_files(other, "other")  # a CA that signed nothing of the lab's
    with pytest.raises(EngineError, match="TLS verification failed"):
        connect_host(parse_host(lab.hosts[0].tcp), TLSFiles.resolve(other / "ca.pem",
                     other / "cert.pem", other / "key.pem"))  # fmt: skip
    r = sorctl("images", "push", "--host", lab.hosts[0].tcp, "--role", "relay",
               env={"DOCKER_CERT_PATH": str(other)})  # fmt: skip
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "TLS verification failed" in lines[0], r.stderr
    assert lab.hosts[0].tcp in lines[0]


def test_images_are_shipped_once_and_an_unreachable_host_is_named(lab):
    h2, h3 = lab.host("h2"), lab.host("h3")
    ssh = {"HOME": str(lab.ssh_home), "DOCKER_CERT_PATH": str(lab.dir)}
    dead = h2.tcp.replace(h2.address, h2.address.rsplit(".", 1)[0] + ".99")
    r = sorctl("images", "push", "--host", h2.tcp, "--host", h3.ssh, "--host", dead, env=ssh)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].count("host ") == 1 and dead in r.stderr
    # the reachable hosts got every role's image, with the same inputs as here
    for host in (h2, h3):
        tags = {t for i in lab.client(host).images.list() for t in i.tags}
        assert {f"sorctl-{r}:" for r in ("scheduler", "node", "relay", "client")} <= {
            t.split(":")[0] + ":" for t in tags
        }, tags
    again = sorctl("images", "push", "--host", h2.tcp, "--host", h3.ssh, env=ssh)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("up to date") == 2, again.stdout


# ---- one cluster across the three hosts (two subnets) ----


def lab_env(lab, home) -> dict[str, str]:
    return {"HOME": str(lab.ssh_home), "DOCKER_CERT_PATH": str(lab.dir), "SORCTL_HOME": str(home)}


def host_args(lab, *hosts) -> list[str]:
    """h1 and h2 over tcp:// with TLS, h3 (the other subnet) over ssh://."""
    out = []
    for h in hosts or lab.hosts:
        out += ["--host", h.ssh if h.subnet != lab.hosts[0].subnet else h.tcp]
    return out


def labelled_everywhere(lab, name: str) -> list[str]:
    f = {"label": f"org.sorctl.cluster={name}"}
    return [c.name for h in lab.hosts for c in lab.client(h).containers.list(all=True, filters=f)]


def scheduler_counts(lab, name: str, since: float = 0.0) -> dict[str, int]:
    """What the scheduler counts now (its published table): nodes first seen after `since`."""
    from sorctl.engine.multihost import scheduler_view

    view = scheduler_view(lab.client(lab.hosts[0]), name)
    return {a: c for a, c in view.nodes.items() if c > 0 and view.since.get(a, 0) >= since}


def wait_for(what, check, seconds: float = 60):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {seconds} s")


def test_up_across_hosts_counts_every_node_survives_a_scheduler_restart_and_down_cleans(
    lab, tmp_path
):
    import json
    import time

    env, name = lab_env(lab, tmp_path), "mh-x"
    up = sorctl("up", "--name", name, *host_args(lab), env=env)
    try:
        assert up.returncode == 0, up.stderr
        # h1 had no images yet (the push test sent them to h2 and h3 only)
        assert f"images sent to {lab.hosts[0].tcp}" in up.stderr
        st = sorctl("status", "--name", name, "--json", env=env)
        data = json.loads(st.stdout)["clusters"][0]
        want = {h.address for h in lab.hosts}
        assert set(data["nodes"]) == want and all(c >= 1 for c in data["nodes"].values()), data
        assert all(h["reachable"] for h in data["hosts"])
        assert (tmp_path / "clusters" / name / "hosts.json").is_file()
        every = json.loads(sorctl("status", "--json", env=env).stdout)["clusters"]
        assert [c for c in every if c["name"] == name and "hosts" in c]  # listed without --name
        scale = sorctl("scale", "--nodes", "5", "--name", name, env=env)
        assert scale.returncode == 2 and "one node per" in scale.stderr, scale.stderr
        # logs of one container on the other subnet's host (reached over ssh)
        logs = sorctl("logs", "node-3", "--name", name, env=env)
        assert logs.returncode == 0 and f"{name}-node-3 | " in logs.stdout, logs.stderr
        assert "serving" in logs.stdout and f"{name}-node-1" not in logs.stdout

        # The scheduler restarted: every node, the other subnet's included, counted again
        # without sorctl touching the nodes.
        since = time.time()
        lab.client(lab.hosts[0]).containers.get(f"{name}-scheduler").restart(timeout=5)
        wait_for("every node counted after the restart",
                 lambda: set(scheduler_counts(lab, name, since)) == want)  # fmt: skip
    finally:
        down = sorctl("down", "--name", name, env=env)
    assert down.returncode == 0, down.stderr
    assert labelled_everywhere(lab, name) == []
    assert not (tmp_path / "clusters" / name).exists()

    # Images already present: none sent again.
    again = sorctl("up", "--name", name, *host_args(lab), env=env)
    sorctl("down", "--name", name, env=env)
    assert again.returncode == 0, again.stderr
    assert "images sent" not in again.stderr


def test_without_directed_discovery_a_restarted_scheduler_misses_the_other_subnet(lab, tmp_path):
    """The negative of the restart test: the same scheduler without `--node ADDR` for each
    member finds the nodes of its own subnet by broadcast, and never the other subnet's."""
    import time

    env, name = lab_env(lab, tmp_path), "mh-d"
    assert sorctl("up", "--name", name, *host_args(lab), env=env).returncode == 0
    try:
        c1 = lab.client(lab.hosts[0])
        old = c1.containers.get(f"{name}-scheduler")
        cmd, kept = old.attrs["Config"]["Cmd"], []
        for i, arg in enumerate(cmd):
            if arg != "--node" and (i == 0 or cmd[i - 1] != "--node"):
                kept.append(arg)
        assert "--node" not in kept and len(kept) < len(cmd)
        material = without_members_file(b"".join(old.get_archive("/run/sorctl")[0]))
        old.remove(force=True)
        new = c1.containers.create(old.image, kept, name=f"{name}-scheduler",
                                   environment=old.attrs["Config"]["Env"], labels=old.labels,
                                   network_mode="host")  # fmt: skip
        assert new.put_archive("/run", material)
        new.start()
        same = {h.address for h in lab.hosts if h.subnet == lab.hosts[0].subnet}
        wait_for("the scheduler's own subnet by broadcast",
                 lambda: same <= set(scheduler_counts(lab, name)))  # fmt: skip
        deadline = time.monotonic() + 8  # several discovery rounds: the other subnet stays out
        while time.monotonic() < deadline:
            assert lab.host("h3").address not in scheduler_counts(lab, name)
            time.sleep(0.5)
    finally:
        sorctl("down", "--name", name, env=env)


def without_members_file(tar_bytes: bytes) -> bytes:
    """The material's tar minus the scheduler's members' file (its `--node ADDR` list)."""
    import io
    import tarfile

    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for m in src.getmembers():
            if m.name != "sorctl/nodes":
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    return out.getvalue()


def test_an_unreachable_host_fails_up_in_one_line_and_nothing_is_left(lab, tmp_path):
    env, name = lab_env(lab, tmp_path), "mh-y"
    h1 = lab.hosts[0]
    dead = h1.tcp.replace(h1.address, h1.address.rsplit(".", 1)[0] + ".98")
    r = sorctl("up", "--name", name, *host_args(lab), "--host", dead, env=env)
    assert r.returncode != 0
    *_, error, hint = r.stderr.strip().splitlines()  # the error, and where to look next
    assert dead in error and "Traceback" not in r.stderr, r.stderr
    assert hint.startswith("run `sorctl doctor --host") and dead in hint, r.stderr
    assert labelled_everywhere(lab, name) == []
    assert not (tmp_path / "clusters" / name).exists()


def test_a_failure_after_start_rolls_back_every_host(lab, tmp_path):
    """A host whose dispy port is taken, and a timeout after every container started."""
    env, name = lab_env(lab, tmp_path), "mh-z"
    h2 = lab.host("h2")
    pushed = sorctl("images", "push", "--host", h2.tcp, "--role", "node", env=env)
    assert pushed.returncode == 0, pushed.stderr
    squatter = lab.client(h2).containers.run(
        image_ref("node"),
        # SO_REUSEADDR: the earlier tests' nodes leave connections in TIME_WAIT on 9701, and a
        # plain bind then fails; dispynode binds its port the same way.
        entrypoint=["python3", "-c", "import socket,time; s=socket.socket(); "
                    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                    "s.bind(('0.0.0.0', 9701)); s.listen(); time.sleep(600)"],
        network_mode="host", detach=True, name="mh-squatter",
    )  # fmt: skip
    try:
        try:
            wait_for("the squatter listening", lambda: reaches(h2.container, h2.address, 9701), 30)
        except AssertionError:
            squatter.reload()
            tail = squatter.logs(tail=5).decode(errors="replace")
            raise AssertionError(f"the squatter is {squatter.status}: {tail}") from None
        r = sorctl("up", "--name", name, *host_args(lab), env=env)
        assert r.returncode != 0
        *_, error, hint = r.stderr.strip().splitlines()
        assert h2.tcp in error and "9701" in error, r.stderr
        assert hint.startswith("run `sorctl doctor --host"), r.stderr
    finally:
        squatter.remove(force=True)
        if (tmp_path / "clusters" / name).exists():  # the test failed: leave no cluster behind
            sorctl("down", "--name", name, env=env)
    assert labelled_everywhere(lab, name) == []
    # Every container started, then the scheduler cannot count them in time: all removed.
    r = sorctl("up", "--name", name, *host_args(lab), "--timeout", "0.1", env=env)
    assert r.returncode != 0 and "does not count" in r.stderr, r.stderr
    assert labelled_everywhere(lab, name) == []
    assert not (tmp_path / "clusters" / name).exists()


def reaches(container: str, address: str, port: int) -> bool:
    """A TCP connection from inside `container` (its network namespace) within 3 s."""
    import docker

    probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/{port}'"
    return docker.from_env().containers.get(container).exec_run(["bash", "-c", probe])[0] == 0


def iptables_rules(lab) -> str:
    import docker

    outer = docker.from_env()
    return "".join(
        outer.containers.get(h.container).exec_run(["iptables", "-S"])[1].decode()
        for h in lab.hosts
    )


def test_firewall_non_member_gets_no_answer_members_work_and_down_removes_the_rules(lab, tmp_path):
    import json

    env, name = lab_env(lab, tmp_path), "mh-f"
    h1, h2 = lab.hosts[0], lab.host("h2")
    router = f"{lab.name}-router"  # on the same LAN as h1, and no member
    r = sorctl("up", "--name", name, *host_args(lab), env=env)
    try:
        assert r.returncode == 0, r.stderr  # the members found each other through the rules
        assert not reaches(router, h1.address, 9702)
        assert not reaches(router, h2.address, 9701)
        assert reaches(router, h1.address, 22)  # the host itself answers: only dispy is shut
        assert reaches(h2.container, h1.address, 9702)  # a member
        st = json.loads(sorctl("status", "--name", name, "--json", env=env).stdout)
        for host in st["clusters"][0]["hosts"]:
            assert any("DROP" in rule for rule in host["rules"]), host
            assert any(h2.address in rule for rule in host["rules"]), host
    finally:
        down = sorctl("down", "--name", name, env=env)
    assert down.returncode == 0, down.stderr
    assert f"sorctl:{name}" not in iptables_rules(lab)
    assert reaches(router, h1.address, 22)
    # --no-firewall: no rule at all
    r = sorctl("up", "--name", name, *host_args(lab), "--no-firewall", env=env)
    try:
        assert r.returncode == 0, r.stderr
        assert f"sorctl:{name}" not in iptables_rules(lab)
        assert reaches(router, h1.address, 9702)
    finally:
        sorctl("down", "--name", name, env=env)


# ---- scale: whole hosts added to and removed from a cluster that runs ----


def rules_on(host) -> str:
    """The host's iptables rules, as `iptables -S` prints them."""
    import docker

    return docker.from_env().containers.get(host.container).exec_run(["iptables", "-S"])[1].decode()


def members_file(lab, name: str) -> str:
    """The scheduler's members' file (the `--node` addresses it reads when it starts)."""
    import io
    import tarfile

    stream, _ = lab.client(lab.hosts[0]).api.get_archive(f"{name}-scheduler", "/run/sorctl/nodes")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return tar.extractfile(tar.getmembers()[0]).read().decode()  # type: ignore[union-attr]


def hosts_kept(home, name: str) -> list[str]:
    import json

    return [h["endpoint"] for h in
            json.loads((home / "clusters" / name / "hosts.json").read_text())["hosts"]]  # fmt: skip


def test_scale_adds_and_removes_hosts_and_undoes_a_failed_add(lab, tmp_path, monkeypatch):
    import json
    import time

    env, name = lab_env(lab, tmp_path), "mh-sc"
    h1, h2, h3 = lab.hosts[0], lab.host("h2"), lab.host("h3")
    [a1, a2, a3] = [h.address for h in (h1, h2, h3)]
    up = sorctl("up", "--name", name, *host_args(lab, h1, h2), env=env)
    try:
        assert up.returncode == 0, up.stderr
        # --nodes does not apply: one line, exit 2
        r = sorctl("scale", "--nodes", "3", "--name", name, env=env)
        assert r.returncode == 2 and "--add-host" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1

        # + h3 (the other subnet, over ssh): its node counted, every member's rules let it in
        r = sorctl("scale", "--name", name, "--add-host", h3.ssh, env=env)
        assert r.returncode == 0, r.stderr
        assert f"+{h3.ssh}={a3}" in r.stdout, r.stdout
        data = json.loads(sorctl("status", "--name", name, "--json", env=env).stdout)
        cluster = data["clusters"][0]
        assert set(cluster["nodes"]) == {a1, a2, a3}, cluster
        assert all(c >= 1 for c in cluster["nodes"].values())
        for host in cluster["hosts"]:
            assert any(a3 in rule for rule in host["rules"]), host
        assert [c["name"] for c in cluster["hosts"][2]["containers"]] == [f"{name}-node-3"]
        assert hosts_kept(tmp_path, name) == [h1.tcp, h2.tcp, h3.ssh]
        assert members_file(lab, name).split() == [a1, a2, a3]
        # a scheduler restart counts the added node of the other subnet again by itself
        since = time.time()
        lab.client(h1).containers.get(f"{name}-scheduler").restart(timeout=5)
        wait_for("every node counted after the restart",
                 lambda: set(scheduler_counts(lab, name, since)) == {a1, a2, a3})  # fmt: skip

        # - h2: no longer counted, nothing of the cluster left there, shut out everywhere
        r = sorctl("scale", "--name", name, "--remove-host", h2.tcp, env=env)
        assert r.returncode == 0, r.stderr
        assert set(scheduler_counts(lab, name)) == {a1, a3}
        f = {"label": f"org.sorctl.cluster={name}"}
        assert lab.client(h2).containers.list(all=True, filters=f) == []
        assert f"sorctl:{name}" not in rules_on(h2)
        assert a2 not in rules_on(h1) and a2 not in rules_on(h3)
        assert hosts_kept(tmp_path, name) == [h1.tcp, h3.ssh]
        assert members_file(lab, name).split() == [a1, a3]

        # An unreachable host: one line naming it, nothing changed.
        dead = h2.tcp.replace(a2, a2.rsplit(".", 1)[0] + ".97")
        r = sorctl("scale", "--name", name, "--add-host", dead, env=env)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert dead in r.stderr.strip().splitlines()[-1], r.stderr
        assert hosts_kept(tmp_path, name) == [h1.tcp, h3.ssh]

        # A failure after the node started (not counted in time): undone on every host.
        r = sorctl("scale", "--name", name, "--add-host", h2.tcp, "--timeout", "0.1", env=env)
        assert r.returncode == 1 and "does not count" in r.stderr, r.stderr
        assert lab.client(h2).containers.list(all=True, filters=f) == []
        assert f"sorctl:{name}" not in rules_on(h2)
        assert a2 not in rules_on(h1) and a2 not in rules_on(h3)
        assert hosts_kept(tmp_path, name) == [h1.tcp, h3.ssh]
        assert members_file(lab, name).split() == [a1, a3]

        # h2 again, for good: a fresh node index (node-2 is not reused)
        r = sorctl("scale", "--name", name, "--add-host", h2.tcp, env=env)
        assert r.returncode == 0, r.stderr
        assert [c.name for c in lab.client(h2).containers.list(filters=f)] == [f"{name}-node-4"]
        assert set(scheduler_counts(lab, name)) == {a1, a2, a3}

        # From Python, the same through sorctl.HostsCluster.
        from sorctl import HostsCluster

        for key, value in env.items():
            monkeypatch.setenv(key, value)
        lines: list[str] = []
        res = HostsCluster(name).scale(remove=[h3.ssh], log=lines.append)
        assert res.removed == {h3.ssh: a3} and set(res.nodes) == {a1, a2}, (res, lines)
        assert set(HostsCluster(name).status().nodes) == {a1, a2}
        assert hosts_kept(tmp_path, name) == [h1.tcp, h2.tcp]
    finally:
        down = sorctl("down", "--name", name, env=env)
    assert down.returncode == 0, down.stderr
    assert labelled_everywhere(lab, name) == []
    assert f"sorctl:{name}" not in iptables_rules(lab)


# ---- solving across the hosts; these come last: they kill lab hosts ----


@pytest.fixture(scope="module")
def spread(lab, tmp_path_factory):
    """A cluster on all three hosts, for the solve tests (down at the end, as far as it can)."""
    home = tmp_path_factory.mktemp("spread")
    env, name = lab_env(lab, home), "mh-s"
    r = sorctl("up", "--name", name, *host_args(lab), env=env)
    assert r.returncode == 0, r.stderr
    yield name, env
    sorctl("down", "--name", name, env=env, timeout=120)


def solve_cmd(name, env, A, b, tmp_path, *extra, run=True):
    import numpy as np

    from sorctl.solver import io as sio

    sio.save_system(tmp_path / "sys.npz", A, b, None)
    args = [sys.executable, "-m", "sorctl.cli.main", "solve", str(tmp_path / "sys.npz"),
            "--cluster", name, "-o", str(tmp_path / "x.npz"), "--json", *extra]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})  # fmt: skip
    if not run:
        return proc
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err, (np.load(tmp_path / "x.npz")["x"] if proc.returncode == 0
                                       else None)  # fmt: skip


def test_solve_uses_every_host_and_matches_scipy(spread, tmp_path):
    import json

    import numpy as np
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from tests.systems import anisotropic2d

    name, env = spread
    A = anisotropic2d(60)
    b = np.random.default_rng(7).standard_normal(A.shape[0])
    code, out, err, x = solve_cmd(name, env, A, b, tmp_path, "--rtol", "1e-8")
    assert code == 0, err
    report = json.loads(out)
    assert report["converged"] and report["nodes"] == 3, report
    want = spla.spsolve(sp.csc_matrix(A), b)
    assert np.linalg.norm(b - A @ x) <= 1e-8 * np.linalg.norm(b) * (1 + 1e-6)
    assert np.abs(x - want).max() <= 1e4 * 1e-8 * np.abs(want).max()


def _after_first_progress(proc) -> None:
    for line in proc.stderr:
        if "iteration" in line:
            return
    raise AssertionError("the solve printed no progress")


def test_a_host_killed_mid_solve_right_answer_and_the_event(lab, spread, tmp_path):
    import json
    import threading

    import docker
    import numpy as np
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    from tests.systems import poisson2d

    name, env = spread
    A = poisson2d(250)
    b = np.random.default_rng(8).standard_normal(A.shape[0])
    proc = solve_cmd(name, env, A, b, tmp_path, "--rtol", "1e-9", run=False)
    _after_first_progress(proc)
    docker.from_env().containers.get(lab.host("h3").container).kill()
    errs: list[str] = []
    t = threading.Thread(target=lambda: errs.extend(proc.stderr), daemon=True)
    t.start()
    out = proc.stdout.read()
    assert proc.wait(timeout=600) == 0, errs[-5:]
    report = json.loads(out)
    assert [e for e in report["events"] if e["event"] == "node_lost"], report["events"]
    x = np.load(tmp_path / "x.npz")["x"]
    want = spla.spsolve(sp.csc_matrix(A), b)
    assert np.linalg.norm(b - A @ x) <= 1e-9 * np.linalg.norm(b) * (1 + 1e-6)
    assert np.abs(x - want).max() <= 1e4 * 1e-9 * np.abs(want).max()


def test_the_scheduler_host_killed_mid_solve_is_one_clear_line_and_exit_1(lab, spread, tmp_path):
    import docker
    import numpy as np

    from tests.systems import poisson2d

    name, env = spread
    A = poisson2d(250)
    b = np.random.default_rng(9).standard_normal(A.shape[0])
    proc = solve_cmd(name, env, A, b, tmp_path, "--rtol", "1e-12", run=False)
    _after_first_progress(proc)
    docker.from_env().containers.get(lab.hosts[0].container).kill()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert lab.hosts[0].tcp in errors[0] or name in errors[0], errors
    assert not (tmp_path / "x.npz").exists()
