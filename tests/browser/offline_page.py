"""Run inside a network namespace with nothing but loopback (see test_dashboard_offline.py):
opens the dashboard with no cluster and no solve, and prints what the page showed as JSON.

    python -m tests.browser.offline_page   (SORCTL_HOME: an empty directory)
"""

from __future__ import annotations

import json
import secrets

from tests.browser.chrome import chrome, dashboard, failed_requests, screenshot, wait_for


def visit(driver, url: str, shot: str) -> dict:
    from selenium.webdriver.common.by import By

    driver.get("about:blank")  # the previous page, whose server is gone, stops polling
    failed_requests(driver)  # and its log is drained
    driver.get(url)
    empty = wait_for("the empty state", lambda: driver.find_elements(By.ID, "no-cluster"), 30)
    wait_for(
        "the solve panel", lambda: driver.find_element(By.ID, "solve-empty").is_displayed(), 10
    )
    screenshot(driver, shot)
    return {
        "clusters": empty[0].text,
        "solve": driver.find_element(By.ID, "solve-empty").text,
        "plotly": driver.execute_script("return typeof Plotly !== 'undefined'"),
        "failed": failed_requests(driver),
        "online": driver.execute_script("return navigator.onLine"),
    }


def main() -> None:
    out = {}
    with chrome() as driver:
        # the engine answers (its socket is a file, not the network) but this cluster is not up
        name = f"db-none-{secrets.token_hex(3)}"
        with dashboard("--cluster", name) as url:
            out["not_running"] = visit(driver, url, "dashboard-offline-no-cluster") | {"name": name}
        with dashboard(env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}) as url:
            out["no_engine"] = visit(driver, url, "dashboard-offline-no-engine")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
