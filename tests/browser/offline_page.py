"""Run inside a network namespace with nothing but loopback (see test_dashboard_offline.py):
opens the dashboard with no cluster and no solve, and prints what the page showed as JSON.

    python -m tests.browser.offline_page   (SORCTL_HOME: an empty directory)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator

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
        "memory": driver.find_element(By.ID, "memory-table").text,
        "failed": failed_requests(driver),
    }


@contextlib.contextmanager
def lab_dashboard() -> Iterator[str]:
    """This process's own dashboard server whose sorctl.api sees one cluster across three Docker
    hosts (the status api.hosts_status would give; no host is reached), and a cluster solve's
    feed with per-worker figures. Yields its URL."""
    import uvicorn

    from sorctl import api
    from sorctl.dashboard import server
    from tests.unit.test_dashboard_data import lab

    os.environ["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"  # no engine of its own
    api.multihost_clusters = lambda: ["lab"]  # type: ignore[assignment]
    api.hosts_status = lambda name, tls_files=(None, None, None): lab()  # type: ignore[assignment]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(server.create_app(), log_level="warning", access_log=False,
                            lifespan="off")  # fmt: skip
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        web.should_exit = True
        thread.join(10)


def cluster_feed() -> str:
    """A finished cluster solve's feed with two rounds of two workers' figures; its id."""
    from sorctl import solvefeed

    figures = {"10.0.5.5#0": {"sweep_s": 1.0, "wait_s": 0.5, "residual_s": 0.25,
                              "sent_bytes": 4000.0, "send_s": 0.75},
               "10.0.5.7#0": {"sweep_s": 2.0, "wait_s": 0.25, "residual_s": 0.25,
                              "sent_bytes": 2000.0, "send_s": 0.5}}  # fmt: skip
    options = {"method": "sor", "omega": 1.8, "rtol": 1e-8}
    with solvefeed.FeedWriter(backend="cluster:lab", cluster="lab", n=100, nnz=460,
                              options=options) as feed:  # fmt: skip
        feed.progress(0, 1.0)
        for _ in range(2):
            feed.event({"event": "round", "iterations": 10, "seconds": 1.0, "workers": figures})
            feed._flush()  # each round its own line, as a second apart
        feed.progress(20, 1e-9)
        feed.done({"reason": "rtol", "converged": True, "iterations": 20, "time_s": 2.0,
                   "relative_residual": 1e-9, "omega": 1.8,
                   "memory": {"host": 150_000_000, "client": 120_000_000,
                              "client_cgroup": 300_000_000,
                              "workers": {"10.0.5.5#0": 90_000_000, "10.0.5.7#0": 80_000_000}},
                   "a_bytes": {"host_to_client": 12_000,
                               "client_to_workers": {"10.0.5.5#0": 6_000, "10.0.5.7#0": 5_000},
                               "total": 23_000}})  # fmt: skip
    return feed.id


def texts(driver, selector: str, data: str, inner: str = "") -> list[list[str]]:
    """[data-DATA attribute, rendered text (of its `inner` element)] of every element matching
    `selector`, read in one script: the page redraws these tables as its feeds update, so
    elements found first and read one by one can be gone by the time they are read."""
    return driver.execute_script(
        "const [sel, data, inner] = arguments;"
        "return [...document.querySelectorAll(sel)].map((el) => ["
        "  data ? el.dataset[data] : '', (inner ? el.querySelector(inner) : el).innerText])",
        selector, data, inner,
    )  # fmt: skip


def across_hosts(driver, url: str, feed_id: str) -> dict:
    from selenium.webdriver.common.by import By

    driver.get("about:blank")  # as in visit(): the previous page stops, its log is drained
    failed_requests(driver)
    driver.get(url)
    wait_for("the host boxes", lambda: driver.find_elements(By.CSS_SELECTOR,
             '.cluster[data-multihost] .host[data-host]'), 30)  # fmt: skip
    boxes = dict(texts(driver, ".cluster[data-multihost] .host[data-host]", "host"))
    nodes = dict(texts(driver, ".host .box[data-role=node]", "name"))
    head = driver.find_element(By.CSS_SELECTOR, ".cluster[data-multihost] .cluster-head").text
    no_engine = driver.find_element(By.ID, "no-cluster").text
    row = f'#solves tr.pick[data-id$="{feed_id}"]'
    wait_for("the cluster solve's row", lambda: driver.find_elements(By.CSS_SELECTOR, row), 30)
    driver.execute_script(f"document.querySelector('{row}').click()")
    wait_for("the workers", lambda: driver.find_elements(By.CSS_SELECTOR,
             "#workers-table tr[data-slot] td.send"), 30)  # fmt: skip
    screenshot(driver, "dashboard-offline-across-hosts")
    return {
        "hosts": boxes,
        "nodes": nodes,
        "head": head,
        "no_engine": no_engine,
        "header": [text for _, text in texts(driver, "#workers-table th", "")],
        "send": dict(texts(driver, "#workers-table tr[data-slot]", "slot", "td.send")),
        "bars": driver.execute_script(
            "return document.getElementById('workers-chart').data.map((t) => [t.name, t.x])"
        ),
        "memory": driver.execute_script(  # textContent: the report box is closed
            "return [...document.querySelectorAll('#memory-table tr')]"
            ".map((tr) => [...tr.children].map((c) => c.textContent))"
        ),
        "failed": failed_requests(driver),
    }  # fmt: skip


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
        # a cluster across Docker hosts (its status as the API gives it) and a cluster solve
        feed_id = cluster_feed()
        with lab_dashboard() as url:
            out["across_hosts"] = across_hosts(driver, url, feed_id)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
