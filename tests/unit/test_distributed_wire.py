"""The client container's side of the conversation with the host: JSON lines, result file,
and the entry's bad-input path (which never reaches dispy)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from sorctl.distributed import wire
from sorctl.distributed.job import SolveJob
from sorctl.engine import solve_container as solve_cluster
from sorctl.errors import InputError
from sorctl.names import RUN_UID
from sorctl.options import SolveOptions
from sorctl.solver import io as sio
from tests.drivers import cluster_solve as solve
from tests.workers import workers


def test_lines_round_trip_and_foreign_lines_are_ignored(capsys):
    wire.emit("progress", iteration=10, residual=0.5)
    wire.emit("progress", iteration=11, residual=float("nan"))
    out = capsys.readouterr().out.splitlines()
    assert wire.parse(out[0]) == {"type": "progress", "iteration": 10, "residual": 0.5}
    assert wire.parse(out[1])["residual"] is None
    assert wire.parse("dispy: some log line") is None
    assert wire.parse(wire.PREFIX + "{not json") is None


def test_result_file_round_trips_through_save_solution(tmp_path):
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(50, 50), format="csr")
    with workers({"a": 1, "b": 1}) as ex:
        res = solve(t, np.ones(50), ex, omega=1.5, rtol=1e-8, backend="cluster:x")
    path = tmp_path / "r.npz"
    sio.save_solution(path, res.x, res.residuals, res.to_report())
    back = wire.read_result(path)
    np.testing.assert_array_equal(back.x, res.x)
    assert back.residuals == res.residuals
    assert (back.converged, back.reason, back.iterations, back.backend) == (
        True,
        "rtol",
        res.iterations,
        "cluster:x",
    )
    assert (
        back.extra["blocks"] == res.extra["blocks"] and back.extra["events"] == res.extra["events"]
    )
    assert json.dumps(back.to_report()) == json.dumps(res.to_report())


def test_entry_reports_a_bad_system_file_with_exit_2_and_no_result(tmp_path):
    bad = tmp_path / "system.npz"
    bad.write_bytes(b"not a zip")
    out = tmp_path / "result.npz"
    job = tmp_path / "job.json"
    doc = SolveJob(scheduler="127.0.0.1", solve_dir=str(tmp_path))
    job.write_text(doc.to_json())
    doc.system_ready_path.touch()  # as the host marks the file whole
    proc = subprocess.run(
        [sys.executable, "-m", "sorctl.distributed", str(job)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    msgs = [wire.parse(line) for line in proc.stdout.splitlines()]
    errors = [m for m in msgs if m and m["type"] == "error"]
    assert len(errors) == 1 and "system.npz" in errors[0]["message"] and errors[0]["code"] == 2
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("tls", [False, True])
def test_the_client_gets_the_certificate_only_from_a_tls_cluster(tmp_path, tls):
    for fname in ("secret", "cert.pem", "key.pem"):
        (tmp_path / fname).write_text(fname)
    info = SimpleNamespace(
        name="t",
        tls=tls,
        secret_file=tmp_path / "secret",
        cert_file=tmp_path / "cert.pem" if tls else None,
        key_file=tmp_path / "key.pem" if tls else None,
    )
    with tarfile.open(fileobj=io.BytesIO(solve_cluster._material_tar(info))) as tar:
        files = {m.name: m.mode for m in tar.getmembers() if m.isfile()}
        assert tar.extractfile("sorctl/secret").read() == b"secret"
    want = {"sorctl/secret"} | ({"sorctl/cert.pem", "sorctl/key.pem"} if tls else set())
    assert files == dict.fromkeys(want, 0o400)


def test_the_job_and_then_the_system_go_in_as_tar_streams_made_from_the_file(tmp_path):
    system = tmp_path / "user.npz"
    system.write_bytes(np.random.default_rng(0).bytes(3 * solve_cluster.FILE_CHUNK + 77))
    job = SolveJob(scheduler="10.0.0.2")
    with tarfile.open(fileobj=io.BytesIO(solve_cluster._job_tar(job))) as tar:
        first = {m.name: m for m in tar.getmembers()}
        doc = tar.extractfile("solve/job.json").read()
    assert SolveJob.from_json(doc.decode()) == job
    assert first["solve"].isdir() and first["solve"].mode == 0o700
    chunks = list(solve_cluster._system_tar(system, job))
    assert max(map(len, chunks)) <= solve_cluster.FILE_CHUNK + 2048  # never the whole file
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        members = tar.getmembers()
        got = tar.extractfile(job.system_path.name).read()
    assert got == system.read_bytes()
    # the ready mark comes last: once the client sees it, the file is whole
    assert [m.name for m in members] == [job.system_path.name, job.system_ready_path.name]
    every = [*first.values(), *members]
    assert {m.mode for m in every if m.isfile()} == {0o600}
    assert {(m.uid, m.gid) for m in every} == {(RUN_UID, RUN_UID)}


@pytest.mark.parametrize(
    "options,message",
    [
        (SolveOptions(method="multicolor"), "locally only"),
        (SolveOptions(method="cg-ssor", inner_sweeps=2), "inner-sweeps 1"),
    ],
)
def test_options_the_cluster_cannot_run_are_refused_before_anything_starts(options, message):
    info = SimpleNamespace(name="t", tls=False)
    with pytest.raises(InputError, match=message):
        solve_cluster.run(info, None, options)


def test_the_job_document_round_trips_and_refuses_unknown_options():
    job = SolveJob(scheduler="10.0.0.2", options=SolveOptions(rtol=1e-6, blocks=4), nodes=3)
    assert SolveJob.from_json(job.to_json()) == job
    with pytest.raises(InputError, match="unknown solve option"):
        SolveJob.from_json(job.to_json().replace('"blocks"', '"blokcs"'))


def test_the_client_reads_the_system_only_once_its_ready_mark_is_in(tmp_path):
    from sorctl.distributed.__main__ import _wait_for

    mark = tmp_path / "system.ready"
    with pytest.raises(InputError, match="system.npz did not arrive within 0 s"):
        _wait_for(mark, "system.npz", 0.05)
    mark.touch()
    _wait_for(mark, "system.npz", 0.05)  # there: returns at once
