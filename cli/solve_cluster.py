"""Placeholder seam: the distributed-solve issue fills this in (find a running cluster, solve on it)."""

from __future__ import annotations


def find_running(name: str | None):
    """The running cluster to solve on (None: solve locally)."""
    return None
