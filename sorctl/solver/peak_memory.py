"""Peak memory of this process (and of its container's cgroup), for the solve report."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

# the container's own cgroup, as a container sees it: v2 then v1
CGROUP_PEAK_FILES = (
    Path("/sys/fs/cgroup/memory.peak"),
    Path("/sys/fs/cgroup/memory/memory.max_usage_in_bytes"),
)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (getrusage; Linux gives KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def note_host_peak(fields: dict) -> None:
    """Put this process's peak so far into a report (or a result's extra fields) as memory.host,
    first, beside the client's and the workers' figures of a cluster solve."""
    memory = {k: v for k, v in fields.get("memory", {}).items() if k != "host"}
    fields["memory"] = {"host": peak_rss_bytes(), **memory}


def cgroup_peak_bytes(files: tuple[Path, ...] = CGROUP_PEAK_FILES) -> int | None:
    """The peak memory of this process's cgroup (every process of a container, page cache
    included), or None where no such file is readable."""
    for path in files:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            continue
    return None
