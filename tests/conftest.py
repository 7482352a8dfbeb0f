"""Shared test set-up: Docker availability, and CI=true turning every skip into a failure."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def pytest_collection_modifyitems(config, items):
    # Everything under tests/integration starts real containers.
    for item in items:
        if "integration" in item.nodeid.split("::")[0]:
            item.add_marker(pytest.mark.docker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    # Under CI a skip hides a missing engine or image: report it as a failure instead.
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI=true (a skip is a failure here): {reason}"


@pytest.fixture(scope="session")
def docker_client():
    """A Docker SDK client; skips (fails under CI) when no engine answers."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no engine, no socket, no permission
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()
