"""The cluster secret is in no process's command line or environment, in any container.

dispy takes its secret only as an option; on a command line it would show in `ps` for every
user of the host. The images' launcher hands it to the daemon in memory instead. Here a TLS
cluster in the relay layout (scheduler, relays, nodes, router) runs a solve (client container,
worker jobs on the nodes), and while it runs the test reads /proc/PID/cmdline and
/proc/PID/environ of every process of every container of the cluster, plus each container's
configured command and environment, and finds the secret nowhere.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sorctl.engine import solve_container
from sorctl.names import LABEL_CLUSTER
from sorctl.options import SolveOptions
from sorctl.solver.io import System
from tests.systems import poisson2d

SORCTL = str(Path(sys.executable).with_name("sorctl"))
pytestmark = pytest.mark.timeout(600)

# Every process in the container: its pid, then its command line and environment on one line
# each (NULs made spaces). Run as root so that every process's environ is readable.
DUMP = r"""for p in /proc/[0-9]*; do
  [ -r "$p/cmdline" ] || continue
  echo "pid ${p#/proc/}"
  tr '\0' ' ' <"$p/cmdline" 2>/dev/null; echo
  tr '\0' ' ' <"$p/environ" 2>/dev/null; echo
done"""


@pytest.fixture(scope="module")
def cluster(docker_client, tmp_path_factory, monkeypatch_module):
    from sorctl.engine.images import require_images

    require_images(docker_client, ["node", "scheduler", "relay", "router", "client"])
    monkeypatch_module.setenv("SORCTL_HOME", str(tmp_path_factory.mktemp("home")))
    name = f"mh-secret-{secrets.token_hex(3)}"
    try:
        subprocess.run([SORCTL, "up", "--name", name, "--nodes", "2", "--relay", "--tls"],
                       check=True, timeout=300, stdout=subprocess.DEVNULL)  # fmt: skip
        from sorctl import api

        found = api.cluster_for_solve(name)
        assert found is not None
        yield found.info()
    finally:
        subprocess.run([SORCTL, "down", "--name", name], timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def process_texts(container) -> dict[str, str]:
    """pid -> command line and environment of every process in the container."""
    code, (out, err) = container.exec_run(["bash", "-c", DUMP], user="root", demux=True)
    assert code == 0, err
    out = out or b""
    procs: dict[str, str] = {}
    pid = ""
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("pid "):
            pid = line[4:]
            procs[pid] = ""
        else:
            procs[pid] += line + "\n"
    return procs


def test_no_process_of_any_container_has_the_secret(docker_client, cluster):
    secret = Path(cluster.secret_file).read_text().strip()
    assert len(secret) >= 32
    A = poisson2d(120)
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    seen: dict[str, dict[str, str]] = {}
    done = threading.Event()

    def scan(iteration: int, residual: float) -> None:
        # First progress line: the client container and every worker job are running.
        if seen:
            return
        f = {"label": f"{LABEL_CLUSTER}={cluster.name}"}
        for c in docker_client.containers.list(filters=f):
            attrs = c.attrs
            config = " ".join(attrs["Config"].get("Env") or [])
            config += " " + " ".join(attrs["Config"].get("Cmd") or []) + " "
            config += " ".join(attrs.get("Args") or [])
            seen[c.name] = {"config": config, **process_texts(c)}
        done.set()

    opts = SolveOptions(rtol=1e-10, maxiter=20000, check_every=5)
    res = solve_container.run(cluster, System(A, b, None, "t"), opts, progress=scan)
    assert done.is_set() and res.converged
    roles = {n.split(cluster.name + "-", 1)[1].split("-")[0] for n in seen}
    # Every role was running, the solve's client container included.
    assert {"scheduler", "node", "relay", "router", "solve"} <= roles, roles
    # The scan saw each daemon's own process (started by the launcher, told the secret's file).
    for name, texts in seen.items():
        for role, daemon in (("scheduler", "dispyscheduler"), ("node", "dispynode"),
                             ("relay", "dispynetrelay")):  # fmt: skip
            if f"-{role}" in name:
                assert any(daemon in t and "--secret-file" in t for t in texts.values()), name
    leaks = [
        f"{name} {pid}"
        for name, texts in seen.items()
        for pid, text in texts.items()
        if secret in text
    ]
    assert not leaks, f"the secret shows in: {leaks}"
    # The daemons did get it: both nodes took part, past the secret handshake.
    assert res.extra["nodes"] == 2
