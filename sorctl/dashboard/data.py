"""What the dashboard shows, as plain JSON: the clusters (through sorctl.api) and the solve feeds
(sorctl.solvefeed). No Docker here: the API reaches the engine."""

from __future__ import annotations

from typing import Any

from sorctl import api, solvefeed
from sorctl.errors import ClusterError, EngineError

SOLVES_LISTED = 20


def clusters(only: str | None = None) -> dict[str, Any]:
    """{"engine": bool, "error": str|None, "clusters": [status dicts]} (`only`: one cluster)."""
    try:
        names = api.clusters()
    except EngineError as exc:
        return {"engine": False, "error": str(exc), "clusters": []}
    if only is not None:
        names = [n for n in names if n == only]
    out = []
    for name in names:
        try:
            out.append(api.Cluster(name, must_exist=False).status().to_dict())
        except ClusterError:  # taken down between the listing and its status
            continue
    return {"engine": True, "error": None, "clusters": out}


def solves() -> list[dict[str, Any]]:
    """The newest solve feeds, newest first, one summary each."""
    out = []
    for feed_id in solvefeed.feed_ids()[:SOLVES_LISTED]:
        path = solvefeed.feed_path(feed_id)
        row = solvefeed.summary(path) if path else None
        if row is not None:
            out.append(row)
    return out


def solve_records(feed_id: str, offset: int) -> dict[str, Any] | None:
    """A feed's records from byte `offset` on, and the offset to ask for next; None: no such."""
    path = solvefeed.feed_path(feed_id)
    if path is None:
        return None
    chunk = solvefeed.read(path, max(0, offset))
    return {"records": chunk.records, "offset": chunk.offset}
