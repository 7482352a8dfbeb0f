"""The files that cannot import sorctl.names (the Dockerfile, the entrypoint, the healthcheck,
the compose files) agree with it: labels, ports, the runtime user, paths and roles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sorctl import names
from sorctl.engine.images import IMAGES, sorctl_version

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (IMAGES / "Dockerfile").read_text()
ENTRYPOINT = (IMAGES / "entrypoint.sh").read_text()
HEALTHCHECK = (IMAGES / "healthcheck.sh").read_text()
RUN_DAEMON = (IMAGES / "run-daemon.py").read_text()
COMPOSE = sorted((ROOT / "compose").glob("docker-compose.*.yml"))


def test_dockerfile_has_one_target_per_role_with_its_label():
    for role in names.ROLES:
        assert re.search(rf"^FROM \S+ AS {role}$", DOCKERFILE, re.M), role
        assert f"LABEL {names.LABEL_ROLE}={role}" in DOCKERFILE
        assert f"ENV SORCTL_ROLE={role}" in DOCKERFILE


def test_dockerfile_labels_every_image_and_has_the_cached_stages():
    assert f"LABEL {names.LABEL_BUILT_BY}=sorctl" in DOCKERFILE
    for stage in names.CACHE_STAGES:
        assert re.search(rf"^FROM \S+ AS {stage}$", DOCKERFILE, re.M), stage


def test_dockerfile_user_and_paths():
    assert f"--uid {names.RUN_UID}" in DOCKERFILE
    assert f"--home-dir {names.HOME_DIR}" in DOCKERFILE
    assert f"NUMBA_CACHE_DIR={names.NUMBA_CACHE_DIR}" in DOCKERFILE
    assert f"{names.VENV_DIR}/bin" in DOCKERFILE


def test_entrypoint_paths_and_user():
    assert f"home={names.HOME_DIR}" in ENTRYPOINT
    assert f"${{SORCTL_SECRET_FILE:-{names.SECRET_PATH}}}" in ENTRYPOINT
    assert f">{names.HOST_FILE}" in ENTRYPOINT
    assert f"nodes_file={names.NODES_PATH}\n" in ENTRYPOINT
    assert f"--reuid={names.RUN_USER}" in ENTRYPOINT
    for role in names.ROLES:
        assert re.search(rf"^(\S+ \| )?{role}( \| \S+)?\)$", ENTRYPOINT, re.M), role


def test_healthcheck_ports_and_host_file():
    ports = dict(re.findall(r"^(\S+(?: \| \S+)*)\) port=(\d+) ;;", HEALTHCHECK, re.M))
    seen = {role: int(port) for roles, port in ports.items() for role in roles.split(" | ")}
    assert seen == names.HEALTH_PORTS
    assert names.HOST_FILE in HEALTHCHECK


def test_run_daemon_publishes_the_scheduler_view_where_observe_reads_it():
    assert f'VIEW_FILE = "{names.SCHEDULER_VIEW_FILE}"' in RUN_DAEMON
    assert f'MEMBERS_FILE = "{names.NODES_PATH}"' in RUN_DAEMON


@pytest.mark.parametrize("path", COMPOSE, ids=lambda p: p.name)
def test_compose_files_use_the_labels_images_and_secret_path(path):
    doc = yaml.safe_load(path.read_text())
    default_version = sorctl_version()
    for service in doc["services"].values():
        image = service["image"]
        role = re.fullmatch(r"sorctl-(\w+):\$\{SORCTL_VERSION:-([^}]+)\}", image)
        assert role and role[1] in names.ROLES, image
        assert role[2] == default_version, f"{path.name}: {image} defaults to another version"
        labels = service["labels"]
        assert labels[names.LABEL_ROLE] == role[1]
        assert names.LABEL_CLUSTER in labels and names.LABEL_INDEX in labels
        for volume in service.get("volumes", []):
            if "secret" in volume:
                assert volume.endswith(f":{names.SECRET_PATH}:ro"), volume
    for net in doc.get("networks", {}).values():
        assert names.LABEL_CLUSTER in net["labels"] and names.LABEL_ROLE in net["labels"]
