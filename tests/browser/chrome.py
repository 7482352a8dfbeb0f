"""A real headless Chromium (Debian's chromium and chromium-driver) driven by selenium, and a
`sorctl dashboard` process to point it at. Screenshots go to test-artefacts/ (CI uploads it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("SORCTL_TEST_ARTEFACTS") or ROOT / "test-artefacts")
SORCTL = str(Path(sys.executable).with_name("sorctl"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing: apt-get install chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ModuleNotFoundError:
        return "selenium is missing: pip install -e '.[dev]'"
    return None


@contextlib.contextmanager
def chrome(width: int = 1400, height: int = 1200) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def dashboard(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Iterator[str]:
    """`sorctl dashboard --port 0 ARGS` running; yields the URL it printed."""
    cmd = [SORCTL, "dashboard", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the URL, printed once it listens
        if not line.startswith("http://"):
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"sorctl dashboard printed {line!r}: {err}")
        yield line.strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    """check()'s first truthy value; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def screenshot(driver: Any, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def failed_requests(driver: Any) -> list[str]:
    """Browser log entries of resources that did not load."""
    return [e["message"] for e in driver.get_log("browser") if e.get("source") == "network"]
