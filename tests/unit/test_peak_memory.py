"""Where the report's memory figures come from: getrusage, and a container's cgroup files."""

from __future__ import annotations

import numpy as np

from sorctl.solver.peak_memory import cgroup_peak_bytes, note_host_peak, peak_rss_bytes


def test_peak_rss_is_bytes_and_grows_with_what_the_process_touched():
    before = peak_rss_bytes()
    held = np.ones(before // 8 + (16 << 17))  # more than the peak so far, plus 16 MiB
    assert peak_rss_bytes() >= held.nbytes > before


def test_cgroup_peak_reads_the_first_file_there_is(tmp_path):
    v2, v1 = tmp_path / "memory.peak", tmp_path / "memory.max_usage_in_bytes"
    assert cgroup_peak_bytes((v2, v1)) is None
    v1.write_text("7770112\n")
    assert cgroup_peak_bytes((v2, v1)) == 7770112
    v2.write_text("max\n")  # not a number: the next file
    assert cgroup_peak_bytes((v2, v1)) == 7770112
    v2.write_text("123\n")
    assert cgroup_peak_bytes((v2, v1)) == 123


def test_host_peak_goes_first_beside_the_clusters_figures():
    extra = {"memory": {"client": 5, "workers": {"a": 6}}}
    note_host_peak(extra)
    assert list(extra["memory"]) == ["host", "client", "workers"]
    assert extra["memory"]["host"] > 0
