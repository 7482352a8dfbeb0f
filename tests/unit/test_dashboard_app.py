"""The dashboard's web app, through starlette's test client (no browser, no Docker engine)."""

from __future__ import annotations

import re
import socket
from importlib import resources

import pytest
from starlette.testclient import TestClient

from sorctl import solvefeed
from sorctl.dashboard import server
from tests.cli_runner import run_cli


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SORCTL_HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    return tmp_path / "solves"


def test_page_scripts_and_plotly_come_from_sorctl_itself(home):
    client = TestClient(server.create_app())
    page = client.get("/")
    assert page.status_code == 200 and "sorctl dashboard" in page.text
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/") for ref in refs)  # nothing from another host
    for ref in refs:
        assert client.get(ref).status_code == 200, ref
    js = client.get("/vendor/plotly.min.js")
    shipped = resources.files("plotly") / "package_data" / "plotly.min.js"
    assert js.content == shipped.read_bytes()
    for name in ("app.js", "app.css"):
        text = client.get(f"/static/{name}").text
        assert not re.search(r"https?://", text), name


def test_no_engine_is_an_empty_state_not_an_error(home):
    body = TestClient(server.create_app(cluster="dbx")).get("/api/clusters").json()
    assert body == {"only": "dbx", "engine": False, "error": body["error"], "clusters": [],
                    "multihost": []}  # fmt: skip
    assert "Docker" in body["error"]


def test_solves_and_their_records_from_an_offset(home):
    with solvefeed.FeedWriter(backend="local", n=4, nnz=10, options={"method": "sor"}) as feed:
        feed.event({"event": "placed", "blocks": 2})
        feed.done({"reason": "rtol", "converged": True, "iterations": 7})
    client = TestClient(server.create_app())
    (row,) = client.get("/api/solves").json()["solves"]
    assert row["id"] == feed.path.stem and row["state"] == "done" and row["iteration"] == 7
    first = client.get(f"/api/solves/{row['id']}").json()
    assert [r["type"] for r in first["records"]] == ["start", "event", "done"]
    again = client.get(f"/api/solves/{row['id']}", params={"offset": first["offset"]}).json()
    assert again == {"records": [], "offset": first["offset"]}
    assert client.get("/api/solves/nope").status_code == 404
    assert client.get(f"/api/solves/{row['id']}", params={"offset": "x"}).status_code == 400


def test_a_token_guards_every_request_and_the_page_sets_its_cookie(home):
    client = TestClient(server.create_app(token="s3cret"))
    for path in ("/", "/api/solves", "/api/clusters", "/vendor/plotly.min.js", "/static/app.js"):
        assert client.get(path).status_code == 403, path
    assert client.get("/", params={"token": "wrong"}).status_code == 403
    assert client.get("/", params={"token": "s3cret"}).status_code == 200
    assert client.get("/api/solves").status_code == 200  # the cookie the page set


def test_loopback_needs_no_token_other_addresses_do():
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1")
    assert server.is_loopback("localhost")
    assert not server.is_loopback("0.0.0.0") and not server.is_loopback("10.1.2.3")
    assert server.url("0.0.0.0", 8700, "t") == "http://127.0.0.1:8700/?token=t"
    assert server.url("127.0.0.1", 8700, None) == "http://127.0.0.1:8700/"


def test_a_port_in_use_is_one_line_and_exit_2(home, capsys, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_cli(["dashboard", "--port", port], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert f"--port {port}" in err and "Traceback" not in err


def test_missing_extras_are_one_line_and_exit_1(home, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "plotly" else real(name, *a)
    )
    code, out, err = run_cli(["dashboard", "--port", "0"], capsys, monkeypatch)
    assert code == 1 and out == ""
    assert (
        err.strip()
        == "sorctl: error: sorctl dashboard needs plotly: pip install 'sorctl[dashboard]'"
    )
