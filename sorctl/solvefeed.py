"""Solve feeds: every solve appends its progress and events as JSON lines to a file of its own,
which `sorctl dashboard` (in another process, or another terminal) follows.

Layout: ${SORCTL_HOME:-~/.config/sorctl}/solves/<started>-<id>.jsonl, one JSON object a line:
    start    {id, t, pid, backend, cluster, n, nnz, method, options}
    progress {t, iteration, residual}          relative residual, at most PROGRESS_EVERY_S apart
    event    {t, event, ...}                   the driver's events (node_lost, block_moved, ...)
                                               and per-worker figures summed over the rounds
                                               of about a second (event "round", with "rounds")
    done     {t, report}                       the solve's JSON report (residual history included)
    failed   {t, message}                      an error ended it
`t` is seconds since the solve started (start's `t` is UNIX time). A feed whose writer process is
gone without `done` or `failed` was killed. Writing never fails a solve: an unwritable state
directory only means no feed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

KEEP = 100  # feeds kept; older ones are removed when a new solve starts
PROGRESS_EVERY_S = 0.2  # a fast local solve checks thousands of times a second
ROUNDS_EVERY_S = 1.0  # a cluster solve with short rounds ends dozens a second: summed per second
TAIL_BYTES = 64 * 1024  # a summary reads the first line and this much of the end


def feed_dir() -> Path:
    return Path(os.environ.get("SORCTL_HOME") or Path.home() / ".config" / "sorctl") / "solves"


def _clean(value: Any) -> Any:
    """NaN/Inf as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class FeedWriter:
    """One solve's feed. Use as a context manager around the solve: an exception leaves a
    `failed` line (Ctrl-C too: 'interrupted') before it propagates."""

    def __init__(self, *, backend: str, n: int, nnz: int, options: dict[str, Any],
                 cluster: str | None = None, directory: Path | None = None) -> None:  # fmt: skip
        self.id = secrets.token_hex(4)
        self.t0 = time.monotonic()
        self._last_progress = -math.inf
        self._pending: tuple[int, float] | None = None
        self._rounds: dict[str, Any] | None = None  # rounds not written yet, summed
        self._last_rounds = -math.inf
        self._fh: IO[str] | None = None
        directory = directory or feed_dir()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        self.path = directory / f"{stamp}-{self.id}.jsonl"
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            _prune(directory, KEEP - 1)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 -- closed in close()
        except OSError:
            self._fh = None
        self._write("start", t=time.time(), id=self.id, pid=os.getpid(), backend=backend,
                    cluster=cluster, n=n, nnz=nnz, method=options.get("method"),
                    options=options)  # fmt: skip

    def _write(self, kind: str, **fields: Any) -> None:
        if self._fh is None:
            return
        fields.setdefault("t", round(time.monotonic() - self.t0, 3))
        try:
            self._fh.write(json.dumps(_clean({"type": kind, **fields}), default=str) + "\n")
            self._fh.flush()
        except (OSError, ValueError):
            self._fh = None

    def progress(self, iteration: int, residual: float) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S:
            self._pending = (iteration, residual)
            return
        self._last_progress, self._pending = now, None
        self._write("progress", iteration=int(iteration), residual=float(residual))

    def event(self, event: dict[str, Any]) -> None:
        """A driver event; `round` events (per-worker figures) are summed over ROUNDS_EVERY_S."""
        if event.get("event") == "round":
            self._add_round(event)
            if time.monotonic() - self._last_rounds < ROUNDS_EVERY_S:
                return
        self._flush()
        if event.get("event") != "round":
            self._write("event", **{k: v for k, v in event.items() if k != "type"})

    def _add_round(self, event: dict[str, Any]) -> None:
        if self._rounds is None:
            self._rounds = {"event": "round", "rounds": 0, "iterations": 0, "seconds": 0.0,
                            "workers": {}}  # fmt: skip
        acc = self._rounds
        acc["rounds"] += 1
        acc["iterations"] += int(event.get("iterations") or 0)
        acc["seconds"] += float(event.get("seconds") or 0.0)
        for slot, figures in (event.get("workers") or {}).items():
            mine = acc["workers"].setdefault(slot, {})
            for key, value in figures.items():
                mine[key] = mine.get(key, 0.0) + float(value or 0.0)

    def done(self, report: dict[str, Any]) -> None:
        self._flush()
        self._write("done", report=report)

    def failed(self, message: str) -> None:
        self._flush()
        self._write("failed", message=message)

    def _flush(self) -> None:
        """Write what is held back (the last progress, the rounds summed so far)."""
        if self._pending is not None:
            self._last_progress = -math.inf
            self.progress(*self._pending)
        if self._rounds is not None:
            self._write("event", **self._rounds)
            self._rounds, self._last_rounds = None, time.monotonic()

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None

    def __enter__(self) -> FeedWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None:
            self.failed("interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc))
        self.close()


def _prune(directory: Path, keep: int) -> None:
    for old in sorted(directory.glob("*.jsonl"))[: -keep or None]:
        with contextlib.suppress(OSError):
            old.unlink()


@dataclass
class Chunk:
    records: list[dict[str, Any]]
    offset: int  # where the next read starts (after the last complete line)


def feed_ids(directory: Path | None = None) -> list[str]:
    """Feed ids, newest first (a feed's file name begins with its start time)."""
    files = sorted((directory or feed_dir()).glob("*.jsonl"), reverse=True)
    return [f.stem for f in files]


def feed_path(feed_id: str, directory: Path | None = None) -> Path | None:
    """The file of `feed_id` (a name from feed_ids), or None for anything else."""
    directory = directory or feed_dir()
    if feed_id not in feed_ids(directory):
        return None
    return directory / f"{feed_id}.jsonl"


def read(path: Path, offset: int = 0) -> Chunk:
    """The complete lines from byte `offset` on (a line being written stays for the next read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return Chunk([], offset)
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict):
                records.append(rec)
    return Chunk(records, offset + end)


def summary(path: Path) -> dict[str, Any] | None:
    """One feed in a line: id, when, where, state (running, done, failed, killed), the last
    iteration and residual, and the report's reason when done. Reads the first line and the
    end of the file only: a feed of a long solve is large."""
    try:
        with open(path, "rb") as fh:
            head = fh.readline()
            size = fh.seek(0, os.SEEK_END)
            start_at = max(len(head), size - TAIL_BYTES)
            fh.seek(start_at)
            tail = fh.read()
            if start_at > len(head) and b"\n" not in tail.rstrip(b"\n"):
                # the last line alone is longer than the tail (a done report with a long
                # residual history): read back to its start, or the solve reads as running
                tail = _last_line(fh, len(head), start_at) + tail
    except OSError:
        return None
    try:
        start = json.loads(head)
    except ValueError:
        return None
    if not isinstance(start, dict) or start.get("type") != "start":
        return None
    records = []
    for line in tail.split(b"\n"):
        with contextlib.suppress(ValueError):  # the first may be cut, the last unfinished
            rec = json.loads(line)
            if isinstance(rec, dict):
                records.append(rec)
    out: dict[str, Any] = {
        "id": path.stem,
        "started": start.get("t"),
        "backend": start.get("backend"),
        "cluster": start.get("cluster"),
        "n": start.get("n"),
        "method": start.get("method"),
        "state": "running",
        "iteration": None,
        "residual": None,
    }
    for rec in records:
        if rec.get("type") == "progress":
            out["iteration"], out["residual"] = rec.get("iteration"), rec.get("residual")
    last = records[-1] if records else start
    if last.get("type") == "done":
        report = last.get("report") or {}
        out.update(state="done", reason=report.get("reason"), converged=report.get("converged"),
                   iteration=report.get("iterations"), residual=report.get("relative_residual"),
                   time_s=report.get("time_s"))  # fmt: skip
    elif last.get("type") == "failed":
        out.update(state="failed", message=last.get("message"))
    elif not _alive(int(start.get("pid") or 0)):
        out["state"] = "killed"
    return out


def _last_line(fh: IO[bytes], floor: int, end: int) -> bytes:
    """The bytes from the newline before `end` (or `floor`) up to `end`, read backwards."""
    out = b""
    while end > floor:
        begin = max(floor, end - TAIL_BYTES)
        fh.seek(begin)
        chunk = fh.read(end - begin)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return chunk[cut + 1 :] + out
        out, end = chunk + out, begin
    return out


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
