"""Solve feeds: what a solve appends and what the dashboard reads back (no Docker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sorctl import api, solvefeed
from sorctl.options import DEFAULTS
from sorctl.solver import io
from tests.systems import poisson2d


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SORCTL_HOME", str(tmp_path))
    return tmp_path / "solves"


def records(directory):
    (path,) = directory.glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_local_solve_writes_start_progress_and_its_report(home):
    A = poisson2d(16)
    b = np.ones(A.shape[0])
    seen = []
    res = api.solve(A, b, rtol=1e-8, check_every=1, callback=lambda i, r: seen.append((i, r)))
    recs = records(home)
    assert [r["type"] for r in (recs[0], recs[-1])] == ["start", "done"]
    assert recs[0]["backend"] == "local" and recs[0]["n"] == A.shape[0]
    assert recs[0]["options"]["rtol"] == 1e-8 and recs[0]["pid"] == os.getpid()
    progress = [r for r in recs if r["type"] == "progress"]
    assert progress and progress[0]["iteration"] == 0
    # throttled, but the last check before the end is always written
    assert progress[-1]["iteration"] == seen[-1][0] and len(progress) <= len(seen)
    assert recs[-1]["report"]["iterations"] == res.iterations
    assert recs[-1]["report"]["residuals"] == pytest.approx(res.residuals)
    (row,) = [solvefeed.summary(home / f"{i}.jsonl") for i in solvefeed.feed_ids(home)]
    assert row["state"] == "done" and row["reason"] == "rtol" and row["iteration"] == res.iterations


def test_a_failed_solve_says_why_and_a_killed_writer_shows_as_killed(home):
    with pytest.raises(RuntimeError):
        with solvefeed.FeedWriter(backend="local", n=3, nnz=3, options={}) as feed:
            feed.progress(0, 1.0)
            raise RuntimeError("boom")
    row = solvefeed.summary(feed.path)
    assert row["state"] == "failed" and row["message"] == "boom" and row["iteration"] == 0
    # a writer process that died without a last line
    code = ("from sorctl import solvefeed; f = solvefeed.FeedWriter(backend='local', n=1, nnz=1, "
            "options={}); f.progress(3, 0.5); print(f.path)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "SORCTL_HOME": str(home.parent)})  # fmt: skip
    from pathlib import Path

    row = solvefeed.summary(Path(out.stdout.strip()))
    assert row["state"] == "killed" and (row["iteration"], row["residual"]) == (3, 0.5)


def test_read_returns_complete_lines_only_and_resumes_at_the_offset(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"type": "start"}\n{"type": "progress", "iteration": 1}\n{"type": "pro')
    first = solvefeed.read(path)
    assert [r["type"] for r in first.records] == ["start", "progress"]
    with open(path, "a") as fh:
        fh.write('gress", "iteration": 2}\n')
    second = solvefeed.read(path, first.offset)
    assert second.records == [{"type": "progress", "iteration": 2}]
    assert solvefeed.read(path, second.offset).records == []


def test_feed_ids_are_newest_first_and_only_those_names_resolve(home):
    for _ in range(3):
        solvefeed.FeedWriter(backend="local", n=1, nnz=1, options={}).close()
    ids = solvefeed.feed_ids(home)
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)
    assert solvefeed.feed_path(ids[0], home) == home / f"{ids[0]}.jsonl"
    assert solvefeed.feed_path("../secret", home) is None


def test_old_feeds_are_pruned(home, monkeypatch):
    monkeypatch.setattr(solvefeed, "KEEP", 3)
    for _ in range(5):
        solvefeed.FeedWriter(backend="local", n=1, nnz=1, options={}).close()
    assert len(solvefeed.feed_ids(home)) == 3


def test_an_unwritable_state_directory_does_not_fail_the_solve(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SORCTL_HOME", str(blocker))  # a file: no directory can be made under it
    A = poisson2d(8)
    res = api.solve_local(io.system_from_arrays(A, np.ones(A.shape[0]), None), DEFAULTS)
    assert res.converged


def test_nan_residuals_are_written_as_null(home):
    with solvefeed.FeedWriter(backend="local", n=1, nnz=1, options={}) as feed:
        feed.progress(0, float("nan"))
    assert records(home)[1]["residual"] is None


def test_rounds_are_summed_per_second_and_other_events_pass_at_once(home, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(solvefeed.time, "monotonic", lambda: clock[0])
    w = {"a#0": {"sweep_s": 0.5, "wait_s": 0.25, "residual_s": 0.0, "sent_bytes": 100.0,
                 "send_s": 0.125}}  # fmt: skip
    with solvefeed.FeedWriter(backend="cluster:x", n=1, nnz=1, options={}) as feed:
        feed.event({"event": "round", "iterations": 10, "seconds": 0.1, "workers": w})  # written
        for _ in range(3):  # within the second: held back and summed
            clock[0] += 0.1
            feed.event({"event": "round", "iterations": 10, "seconds": 0.1, "workers": w})
        feed.event({"event": "node_lost", "node": "b", "blocks": [1]})  # flushes the sum first
        feed.done({"reason": "rtol"})
    events = [r for r in records(home) if r["type"] == "event"]
    assert [e["event"] for e in events] == ["round", "round", "node_lost"]
    assert events[0]["rounds"] == 1 and events[1]["rounds"] == 3
    assert events[1]["iterations"] == 30
    assert events[1]["workers"]["a#0"] == {"sweep_s": 1.5, "wait_s": 0.75, "residual_s": 0.0,
                                           "sent_bytes": 300.0, "send_s": 0.375}  # fmt: skip


def test_a_summary_reads_only_the_start_and_the_end_of_a_long_feed(home, monkeypatch):
    monkeypatch.setattr(solvefeed, "PROGRESS_EVERY_S", 0.0)
    with solvefeed.FeedWriter(backend="local", n=1, nnz=1, options={}) as feed:
        for i in range(20000):  # about 1 MB of progress lines
            feed.progress(i, 1.0 / (i + 1))
    assert feed.path.stat().st_size > 10 * solvefeed.TAIL_BYTES
    row = solvefeed.summary(feed.path)
    assert row["iteration"] == 19999 and row["residual"] == 1.0 / 20000
    assert row["state"] == "running"  # this process wrote it and is alive, with no last line


def test_a_done_report_longer_than_the_tail_still_reads_as_done(home):
    # a long solve's report carries its whole residual history: one line of many tail lengths
    history = [1.0 / (i + 1) for i in range(40000)]
    with solvefeed.FeedWriter(backend="local", n=1, nnz=1, options={}) as feed:
        feed.progress(1, 0.5)
        feed.done({"reason": "converged", "iterations": 40000, "history": history})
    assert feed.path.stat().st_size > 5 * solvefeed.TAIL_BYTES
    row = solvefeed.summary(feed.path)
    assert row["state"] == "done" and row["iteration"] == 40000
