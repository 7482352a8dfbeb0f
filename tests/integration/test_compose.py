"""compose/: each file brings up its topology with docker-compose and the nodes are discovered."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sorctl.cluster.plan import pick_subnets
from sorctl.engine import apply, images, observe

pytestmark = pytest.mark.timeout(300)

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"


@pytest.fixture(scope="module")
def compose_cmd(docker_client):
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor `docker compose` is installed")


@pytest.mark.parametrize(
    ("file", "prefixes"),
    [
        ("docker-compose.single.yml", ["SORCTL_NET_PREFIX"]),
        ("docker-compose.relay.yml", ["SORCTL_LAN_PREFIX", "SORCTL_REMOTE_PREFIX"]),
    ],
)
def test_compose_file_brings_up_four_discovered_nodes(
    docker_client, compose_cmd, tmp_path, file, prefixes
):
    images.require_images(docker_client, ["scheduler", "node", "relay", "router"])
    name = f"ct{secrets.token_hex(3)}"
    # A private copy: the secret file sits next to the compose file.
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, work)
    (work / "secret").write_text(secrets.token_hex(32))
    (work / "secret").chmod(0o600)
    subnets = pick_subnets(len(prefixes), observe.used_subnets(docker_client), name)
    env = {
        **os.environ,
        "SORCTL_NAME": name,
        "SORCTL_VERSION": images.sorctl_version(),
        **{p: s.rsplit(".", 1)[0] for p, s in zip(prefixes, subnets, strict=True)},
    }
    compose = [*compose_cmd, "-f", str(work / file), "-p", name]
    try:
        res = subprocess.run([*compose, "up", "-d"], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        info = observe.find_cluster(docker_client, name)
        assert info is not None and len(info.nodes) == 4
        want = {n.address for n in info.nodes}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = observe.scheduler_view(docker_client, info).nodes
            if want <= set(seen):
                break
            time.sleep(0.5)
        assert want <= set(seen), f"scheduler counts {sorted(seen)}, want {sorted(want)}"
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, capture_output=True)
        apply.remove_cluster(docker_client, name)  # whatever compose left behind
