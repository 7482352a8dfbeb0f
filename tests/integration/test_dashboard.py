"""`sorctl dashboard` in a real headless Chromium, during a real solve on a real 4-node relay
cluster: the topology, the residual curve gaining points, and a node killed mid-solve shown lost
with its blocks moved. Screenshots go to test-artefacts/ (CI uploads them).

The cluster is named db-<random> and removed by its fixture, even when a test fails.
"""

from __future__ import annotations

import secrets
import subprocess
import threading

import numpy as np
import pytest

from sorctl import api
from tests.browser.chrome import SORCTL, chrome, dashboard, missing, screenshot, wait_for
from tests.systems import poisson2d

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

RTOL = 1e-10


@pytest.fixture(scope="module")
def cluster(docker_client, tmp_path_factory):
    if why := missing():
        pytest.skip(why)
    from sorctl.engine.images import require_images

    require_images(docker_client, ["node", "scheduler", "relay", "router", "client"])
    name = f"db-{secrets.token_hex(3)}"
    with pytest.MonkeyPatch.context() as mp:
        # the cluster's secret and the solves' feeds, for this process and the dashboard's
        mp.setenv("SORCTL_HOME", str(tmp_path_factory.mktemp("home")))
        try:
            subprocess.run([SORCTL, "up", "--name", name, "--nodes", "4", "--relay"],
                           check=True, timeout=300, stdout=subprocess.DEVNULL)  # fmt: skip
            yield api.Cluster(name)
        finally:
            subprocess.run([SORCTL, "down", "--name", name], timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def points(driver) -> int:
    return driver.execute_script(
        "const c = document.getElementById('residual-chart');"
        "return c && c.data && c.data[0] ? c.data[0].x.length : 0;"
    )


def test_dashboard_follows_a_solve_through_a_node_loss(cluster, docker_client):
    from selenium.webdriver.common.by import By

    A = poisson2d(300)
    b = np.ones(A.shape[0])
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = cluster.solve(A, b, rtol=RTOL, omega=1.97, check_every=10,
                                              maxiter=10**6)  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 -- reported by the test below
            outcome["error"] = exc

    victim = cluster.info().nodes[1]
    with dashboard("--cluster", cluster.name) as url, chrome(1400, 1500) as driver:
        driver.get(url)
        card = wait_for("the cluster's card", lambda: driver.find_elements(
            By.CSS_SELECTOR, f'[data-cluster="{cluster.name}"]'), 30)[0]  # fmt: skip
        wait_for("4 nodes counted", lambda: "counts 4 of 4 nodes" in card.text, 30)
        topology = {
            role: len(card.find_elements(By.CSS_SELECTOR, f'.box[data-role="{role}"]'))
            for role in ("scheduler", "node", "relay", "router")
        }
        assert topology == {"scheduler": 1, "node": 4, "relay": 1, "router": 1}
        assert "relay layout" in card.text and "port 9702" in card.text
        screenshot(driver, "dashboard-cluster")

        solver = threading.Thread(target=run, daemon=True)
        solver.start()
        wait_for("the solve on the page", lambda: f"cluster:{cluster.name}" in driver.find_element(
            By.ID, "solve-title").text, 90)  # fmt: skip
        first = wait_for("residual points", lambda: points(driver) >= 3 and points(driver), 120)
        wait_for("more residual points", lambda: points(driver) > first, 60)
        wait_for("per-worker figures", lambda: driver.find_elements(
            By.CSS_SELECTOR, "#workers-table td"), 60)  # fmt: skip
        assert solver.is_alive(), "the solve ended before a node could be killed"
        screenshot(driver, "dashboard-solve-running")

        docker_client.containers.get(victim.name).kill()
        wait_for("the node lost event", lambda: driver.find_elements(
            By.CSS_SELECTOR, "#events li.node_lost"), 120)  # fmt: skip
        moved = wait_for("a block moved", lambda: driver.find_elements(
            By.CSS_SELECTOR, "#events li.block_moved"), 30)  # fmt: skip
        assert victim.address in moved[0].text
        lost = wait_for("the node shown lost", lambda: driver.find_elements(
            By.CSS_SELECTOR, f'.box[data-name="{victim.name}"].lost'), 30)  # fmt: skip
        assert "lost" in lost[0].text
        screenshot(driver, "dashboard-node-lost")

        solver.join(300)
        assert not solver.is_alive() and "error" not in outcome, outcome.get("error")
        res = outcome["result"]
        assert res.converged
        assert np.linalg.norm(b - A @ res.x) <= RTOL * np.linalg.norm(b) * (1 + 1e-6)
        wait_for("the solve shown done", lambda: "done" in driver.find_element(
            By.ID, "solve-stats").text, 30)  # fmt: skip
        assert points(driver) >= first
        wait_for("the solve's row done", lambda: driver.find_elements(
            By.CSS_SELECTOR, '#solves tr.current[data-state="done"]'), 10)  # fmt: skip
        screenshot(driver, "dashboard-solve-done")
