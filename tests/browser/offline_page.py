"""Run inside a network namespace with nothing but loopback (see test_dashboard_offline.py):
opens the dashboard with no cluster and no solve, and prints what the page showed as JSON.

    python -m tests.browser.offline_page   (SORCTL_HOME: an empty directory)
"""

from __future__ import annotations

import json
import secrets
import subprocess

from tests.browser.chrome import (
    ROOT,
    SORCTL,
    chrome,
    dashboard,
    failed_requests,
    screenshot,
    wait_for,
)


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


def finished(driver, url: str) -> dict:
    from selenium.webdriver.common.by import By

    driver.get("about:blank")  # as in visit(): the previous page stops, its log is drained
    failed_requests(driver)
    driver.get(url)
    pick = "#solves tr.pick"
    wait_for("the solve's row", lambda: driver.find_elements(By.CSS_SELECTOR, pick), 30)
    # the table is redrawn every second: find the row and click it in one step
    driver.execute_script(f"document.querySelector('{pick}').click()")

    def shown() -> str:
        text = driver.find_element(By.ID, "solve-stats").text
        return text if "done" in text else ""

    stats = wait_for("the solve shown", shown, 30)
    driver.find_element(By.CSS_SELECTOR, "#report-box summary").click()
    screenshot(driver, "dashboard-offline-local-solve")
    return {
        "row": driver.execute_script(
            "return document.querySelector('#solves tr.current').dataset.state"
        ),
        "stats": stats,
        "points": driver.execute_script(
            "return document.getElementById('residual-chart').data[0].x.length"
        ),
        "save_button": len(
            driver.find_elements(
                By.CSS_SELECTOR, "#residual-chart .modebar-btn[data-title='Download plot as a PNG']"
            )
        ),
        "report": driver.find_element(By.ID, "report").text,
        "failed": failed_requests(driver),
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
        # a finished local solve: its row, its residual plot with a save button, its report
        subprocess.run([SORCTL, "solve", str(ROOT / "examples" / "poisson2d-64.npz"), "--local",
                        "--json"], check=True, capture_output=True, timeout=120)  # fmt: skip
        with dashboard() as url:
            out["solved"] = finished(driver, url)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
