"""`sorctl solve` end to end: every bad input gives exit 2, one stderr line naming
the file, no traceback and no output file; good input gives the answer on stdout only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import scipy.sparse.linalg

from sorctl import api
from sorctl.solver import gallery
from tests.cli_runner import run_cli
from tests.systems import npz_arrays

SORCTL = Path(sys.executable).with_name("sorctl")


def csr_arrays(A):
    import scipy.sparse as sp

    return npz_arrays(sp.csr_matrix(A))


def make_bad(kind, d: Path) -> tuple[Path, list[str]]:
    """A bad input of the given kind: (the file the message must name, extra CLI args)."""
    A, b = gallery.poisson2d(4)
    A = A.toarray()
    f = d / f"{kind}.npz"
    if kind == "missing":
        return d / "nope.npz", []
    if kind == "directory":
        (d / "adir.npz").mkdir()
        return d / "adir.npz", []
    if kind == "not-npz":
        f = d / "notes.txt"
        f.write_text("hello\n")
    elif kind == "garbage-npz":
        f.write_bytes(b"\x00" * 100)
    elif kind in ("truncated", "corrupt"):
        np.savez(f, A=A, b=b)
        raw = bytearray(f.read_bytes())
        if kind == "truncated":
            raw = raw[: len(raw) // 2]
        else:
            raw[200:260] = b"\xff" * 60  # inside A's stored bytes: CRC mismatch
        f.write_bytes(bytes(raw))
    elif kind == "pickled":
        np.savez(f, A=np.array([{"a": 1}, None], dtype=object), b=b)
    elif kind == "missing-keys":
        np.savez(f, b=b)
    elif kind == "no-b":
        np.savez(f, A=A)
    elif kind == "non-square":
        np.savez(f, A=np.ones((3, 4)), b=np.ones(3))
    elif kind == "wrong-b":
        np.savez(f, A=A, b=np.ones(5))
    elif kind == "nan":
        A[1, 2] = A[2, 1] = np.nan
        np.savez(f, A=A, b=b)
    elif kind == "inf-b":
        b[3] = np.inf
        np.savez(f, A=A, b=b)
    elif kind == "zero-diagonal":
        A[2, 2] = 0
        np.savez(f, A=A, b=b)
    elif kind == "negative-diagonal":
        np.savez(f, **csr_arrays(A * np.where(np.eye(16), -1, 1)), b=b)
    elif kind == "nonsymmetric":
        A[0, 5] = 3.0
        np.savez(f, A=A, b=b)
    elif kind == "complex":
        np.savez(f, A=A.astype(complex), b=b)
    elif kind == "empty":
        np.savez(f, A=np.zeros((0, 0)), b=np.zeros(0))
    elif kind == "csr-index-out-of-range":
        arrs = csr_arrays(A)
        arrs["indices"][5] = 99
        np.savez(f, **arrs, b=b)
    elif kind == "csr-bad-indptr":
        arrs = csr_arrays(A)
        arrs["indptr"][3] = arrs["indptr"][5]
        np.savez(f, **arrs, b=b)
    elif kind == "csr-short-indptr":
        arrs = csr_arrays(A)
        arrs["indptr"] = arrs["indptr"][:-2]
        np.savez(f, **arrs, b=b)
    elif kind == "coo-format":
        np.savez(f, **csr_arrays(A), format=np.array("coo"), b=b)
    elif kind == "mtx-without-rhs":
        f = d / "a.mtx"
        scipy.io.mmwrite(f, A)
    elif kind == "mtx-garbage":
        f = d / "bad.mtx"
        f.write_text("%%MatrixMarket matrix coordinate real general\n4 4 2\n1 1\n")
    elif kind == "rhs-wrong-length":
        scipy.io.mmwrite(d / "a.mtx", A)
        np.save(d / "short.npy", np.ones(3))
        return d / "short.npy", ["--rhs", d / "short.npy", "__FILE__", d / "a.mtx"]
    elif kind == "rhs-pickled":
        scipy.io.mmwrite(d / "a.mtx", A)
        np.save(d / "obj.npy", np.array([object()] * 16), allow_pickle=True)
        return d / "obj.npy", ["--rhs", d / "obj.npy", "__FILE__", d / "a.mtx"]
    else:
        raise AssertionError(kind)
    return f, []


BAD = [
    "missing",
    "directory",
    "not-npz",
    "garbage-npz",
    "truncated",
    "corrupt",
    "pickled",
    "missing-keys",
    "no-b",
    "non-square",
    "wrong-b",
    "nan",
    "inf-b",
    "zero-diagonal",
    "negative-diagonal",
    "nonsymmetric",
    "complex",
    "empty",
    "csr-index-out-of-range",
    "csr-bad-indptr",
    "csr-short-indptr",
    "coo-format",
    "mtx-without-rhs",
    "mtx-garbage",
    "rhs-wrong-length",
    "rhs-pickled",
]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_exit_2_one_line_naming_the_file(kind, tmp_path, capsys, monkeypatch):
    named, extra = make_bad(kind, tmp_path)
    out_file = tmp_path / "out" / "solution.npz"
    out_file.parent.mkdir()
    if "__FILE__" in extra:
        i = extra.index("__FILE__")
        args = ["solve", extra[i + 1], *extra[:i], "--local", "-o", out_file]
    else:
        args = ["solve", named, "--local", "-o", out_file]
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(named) in lines[0] and lines[0].startswith("sorctl: error: ")
    assert "Traceback" not in err and out == ""
    assert list(out_file.parent.iterdir()) == []


def test_unreadable_file(tmp_path, capsys, monkeypatch):
    f = tmp_path / "secret.npz"
    np.savez(f, A=np.eye(2), b=np.ones(2))
    f.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the open fail the way it would for a user
        real_open = Path.open

        def denied(self, *args, **kwargs):
            if self == f:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", denied)
    code, _, err = run_cli(["solve", f, "--local"], capsys, monkeypatch)
    assert code == 2 and str(f) in err and "cannot read: Permission denied" in err


def test_json_answer_only_on_stdout_and_solution_file(tmp_path, capsys, monkeypatch):
    # The seam to the cluster backend says "none running" (unit tests never touch Docker).
    monkeypatch.setattr(api, "cluster_for_solve", lambda name: None)
    A, b = gallery.poisson2d(12)
    np.savez(tmp_path / "p.npz", A=A.toarray(), b=b)
    sol = tmp_path / "sol.npz"
    code, out, err = run_cli(
        ["solve", tmp_path / "p.npz", "--json", "-o", sol], capsys, monkeypatch
    )
    assert code == 0
    report = json.loads(out)  # one object, nothing else
    for key in (
        "converged",
        "reason",
        "iterations",
        "relative_residual",
        "omega",
        "omega_source",
        "n",
        "nnz",
        "time_s",
        "backend",
    ):
        assert key in report
    assert report["converged"] and report["backend"] == "local" and report["n"] == 144
    assert "no cluster running: solving on the local backend" in err
    assert "iteration 0" in err
    with np.load(sol, allow_pickle=False) as f:
        assert np.linalg.norm(A @ f["x"] - b) <= 1e-8 * np.linalg.norm(b)
        assert json.loads(str(f["report"]))["iterations"] == report["iterations"]


def test_local_json_report_has_the_hosts_peak_memory_only(tmp_path, capsys, monkeypatch):
    A, b = gallery.poisson2d(12)
    np.savez(tmp_path / "p.npz", A=A.toarray(), b=b)
    held = np.ones(8 << 20)  # 64 MiB, touched: the process's peak is above it
    code, out, _ = run_cli(["solve", tmp_path / "p.npz", "--json", "--local"], capsys, monkeypatch)
    report = json.loads(out)
    assert code == 0 and list(report["memory"]) == ["host"] and "a_bytes" not in report
    assert held.nbytes <= report["memory"]["host"] < 64 << 30


def test_not_converged_exit_3_with_options(tmp_path, capsys, monkeypatch):
    A, b = gallery.poisson2d(12)
    np.savez(tmp_path / "p.npz", A=A.toarray(), b=b)
    code, out, _ = run_cli(
        [
            "solve",
            tmp_path / "p.npz",
            "--json",
            "--max-iter",
            "5",
            "--omega",
            "1.5",
            "--method",
            "ssor",
            "--local",
        ],
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    assert code == 3 and report["reason"] == "maxiter" and report["iterations"] == 5
    assert report["omega"] == 1.5 and report["omega_source"] == "user"
    assert report["method"] == "ssor"


def test_cg_ssor_method_solves_locally(tmp_path, capsys, monkeypatch):
    A, b = gallery.poisson2d(12)
    np.savez(tmp_path / "p.npz", A=A.toarray(), b=b)
    code, out, _ = run_cli(
        ["solve", tmp_path / "p.npz", "--json", "--method", "cg-ssor", "--local"],
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    assert code == 0 and report["method"] == "cg-ssor" and report["converged"]
    assert report["relative_residual"] <= 1e-8 and report["omega_source"] == "estimated"


def test_bad_omega_and_output_dir_are_bad_input(tmp_path, capsys, monkeypatch):
    np.savez(tmp_path / "p.npz", A=np.eye(2) * 2, b=np.ones(2))
    code, _, err = run_cli(
        ["solve", tmp_path / "p.npz", "--omega", "2.5", "--local"], capsys, monkeypatch
    )
    assert code == 2 and "--omega" in err
    code, _, err = run_cli(
        ["solve", tmp_path / "p.npz", "-o", tmp_path / "no" / "x.npz", "--local"],
        capsys,
        monkeypatch,
    )
    assert code == 2 and "does not exist" in err


def test_x0_option_and_plot(tmp_path, capsys, monkeypatch):
    A, b = gallery.poisson2d(8)
    np.savez(tmp_path / "p.npz", A=A.toarray(), b=b)
    x = np.linalg.solve(A.toarray(), b)
    np.save(tmp_path / "x0.npy", x)
    code, out, _ = run_cli(
        [
            "solve",
            tmp_path / "p.npz",
            "--x0",
            tmp_path / "x0.npy",
            "--json",
            "--plot",
            tmp_path / "r.png",
            "--local",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 0 and json.loads(out)["iterations"] == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    np.save(tmp_path / "short.npy", x[:3])
    code, _, err = run_cli(
        ["solve", tmp_path / "p.npz", "--x0", tmp_path / "short.npy", "--local"],
        capsys,
        monkeypatch,
    )
    assert code == 2 and "short.npy" in err


def test_ctrl_c_exits_130_and_leaves_no_file(tmp_path):
    """The real console script, interrupted while it sweeps."""
    A, b = gallery.poisson2d(200)
    from sorctl.solver.io import save_system

    save_system(tmp_path / "p.npz", A, b)
    out = tmp_path / "out.npz"
    proc = subprocess.Popen(
        [
            SORCTL,
            "solve",
            tmp_path / "p.npz",
            "--local",
            "--rtol",
            "0",
            "--omega",
            "1.9",
            "--max-iter",
            "100000000",
            "-o",
            out,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "iteration" not in line:  # wait until it sweeps
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "sorctl exited before sweeping"
            assert time.monotonic() < deadline
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]


def test_plot_without_matplotlib_is_a_clear_error_before_solving(tmp_path, capsys, monkeypatch):
    np.savez(tmp_path / "p.npz", A=np.eye(3) * 2, b=np.ones(3))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = run_cli(
        [
            "solve",
            tmp_path / "p.npz",
            "--local",
            "--plot",
            tmp_path / "r.png",
            "-o",
            tmp_path / "x.npz",
        ],
        capsys,
        monkeypatch,
    )
    assert code == 1 and "--plot needs matplotlib" in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]


class FileOnlyCluster:
    """A cluster seam that solves what it is given locally, after loading the file itself (as
    the client container does); records what the host handed it."""

    def __init__(self, load) -> None:
        self.load, self.given = load, []

    def solve_system(self, system, options, *, callback=None, checkpoint=None):
        import tempfile

        from sorctl.engine import solve_container

        self.given.append(system)
        with tempfile.TemporaryDirectory() as tmp:  # the file the client container would get
            sent = solve_container._system_file(system, Path(tmp))
            return api.solve_local(self.load(sent), options, callback=callback)


def test_cluster_solve_of_a_csr_npz_checks_the_file_in_windows(tmp_path, capsys, monkeypatch):
    from sorctl.solver import io, npz_check

    target = FileOnlyCluster(io.load_system)
    monkeypatch.setattr(api, "cluster_for_solve", lambda name: target)

    def never(*args, **kwargs):
        raise AssertionError("the host read the whole system")

    monkeypatch.setattr(io, "load_system", never)
    A, b = gallery.poisson2d(12)
    f = tmp_path / "p.npz"
    np.savez_compressed(f, **csr_arrays(A), b=b)
    code, out, _ = run_cli(["solve", f, "--json"], capsys, monkeypatch)
    assert code == 0 and json.loads(out)["n"] == 144
    assert target.given == [npz_check.SystemFile(str(f), str(f), 144, A.nnz)]


STREAMED_BAD = [
    "negative-diagonal",
    "csr-index-out-of-range",
    "csr-bad-indptr",
    "csr-short-indptr",
    "coo-format",
]


@pytest.mark.parametrize("kind", [*STREAMED_BAD, "csr-nan", "csr-nonsymmetric", "csr-short-b"])
def test_bad_csr_input_on_a_cluster_gives_the_local_line(kind, tmp_path, capsys, monkeypatch):
    if kind in STREAMED_BAD:
        named, _ = make_bad(kind, tmp_path)
    else:
        A, b = gallery.poisson2d(4)
        arrs = csr_arrays(A)
        if kind == "csr-nan":
            arrs["data"][7] = np.nan
        elif kind == "csr-nonsymmetric":
            arrs["data"][1] += 0.5
        else:
            b = b[:-1]
        named = tmp_path / f"{kind}.npz"
        np.savez(named, **arrs, b=b)
    _, _, local_err = run_cli(["solve", named, "--local"], capsys, monkeypatch)
    target = FileOnlyCluster(lambda path: pytest.fail("solved a bad system"))
    monkeypatch.setattr(api, "cluster_for_solve", lambda name: target)
    code, out, err = run_cli(["solve", named, "--cluster", "c"], capsys, monkeypatch)
    assert code == 2 and out == "" and err == local_err and target.given == []
    assert len(err.strip().splitlines()) == 1


def test_bad_csr_input_naming_a_cluster_that_is_not_running_is_still_bad_input(
    tmp_path, capsys, monkeypatch
):
    from sorctl.errors import ClusterError

    named, _ = make_bad("negative-diagonal", tmp_path)
    _, _, local_err = run_cli(["solve", named, "--local"], capsys, monkeypatch)

    def not_running(name):
        raise ClusterError(f"no cluster {name!r} is running")

    monkeypatch.setattr(api, "cluster_for_solve", not_running)
    code, out, err = run_cli(["solve", named, "--cluster", "gone"], capsys, monkeypatch)
    assert (code, out, err) == (2, "", local_err)


def test_a_csr_npz_with_no_cluster_running_is_read_once(tmp_path, capsys, monkeypatch):
    from sorctl.solver import npz_check

    monkeypatch.setattr(api, "cluster_for_solve", lambda name: None)

    def never(*args, **kwargs):
        raise AssertionError("checked in windows, then read whole again, for a local solve")

    monkeypatch.setattr(npz_check, "check_npz", never)
    A, b = gallery.poisson2d(8)
    f = tmp_path / "p.npz"
    np.savez(f, **csr_arrays(A), b=b)
    code, out, err = run_cli(["solve", f, "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["backend"] == "local"


def test_matrix_market_on_a_cluster_says_it_is_read_whole(tmp_path, capsys, monkeypatch):
    from sorctl.solver import io

    target = FileOnlyCluster(io.load_system)
    monkeypatch.setattr(api, "cluster_for_solve", lambda name: target)
    A, b = gallery.poisson2d(6)
    scipy.io.mmwrite(tmp_path / "a.mtx", A)
    np.save(tmp_path / "b.npy", b)
    target.load = lambda _: io.load_system(tmp_path / "a.mtx", tmp_path / "b.npy")
    target.given = []
    code, _, err = run_cli(["solve", tmp_path / "a.mtx", "--rhs", tmp_path / "b.npy"], capsys,
                           monkeypatch)  # fmt: skip
    assert code == 0, err
    assert f"note: {tmp_path / 'a.mtx'} is read whole on this host" in err
    assert isinstance(target.given[0], io.System)


def test_rhs_and_x0_on_a_cluster_go_in_a_copy_of_the_file(tmp_path, capsys, monkeypatch):
    from sorctl.solver import io, npz_check

    target = FileOnlyCluster(io.load_system)
    monkeypatch.setattr(api, "cluster_for_solve", lambda name: target)
    A, b = gallery.poisson2d(10)
    f = tmp_path / "p.npz"
    np.savez_compressed(f, **csr_arrays(A), b=np.zeros(100), x0=np.full(100, 7.0))
    np.save(tmp_path / "b.npy", b)
    x = scipy.sparse.linalg.spsolve(scipy.sparse.csc_matrix(A), b)
    np.save(tmp_path / "x0.npy", x)  # the answer as the guess: done at iteration 0
    code, out, err = run_cli(["solve", f, "--rhs", tmp_path / "b.npy", "--x0", tmp_path / "x0.npy",
                              "--json"], capsys, monkeypatch)  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["iterations"] == 0
    (given,) = target.given
    assert isinstance(given, npz_check.SystemFile) and not given.as_is
    assert np.array_equal(given.b, b) and np.array_equal(given.x0, x)
    copy = tmp_path / "copy.npz"
    npz_check.copy_with(f, copy, x0=x)
    with np.load(copy) as got, np.load(f) as orig:
        assert sorted(got.files) == sorted(orig.files)
        assert np.array_equal(got["x0"], x) and np.array_equal(got["data"], orig["data"])
        assert np.array_equal(got["b"], orig["b"])
    _, _, local_err = run_cli(["solve", f, "--rhs", tmp_path / "short.npy", "--local"], capsys,
                              monkeypatch)  # fmt: skip
    code, _, err = run_cli(["solve", f, "--rhs", tmp_path / "short.npy"], capsys, monkeypatch)
    assert code == 2 and err == local_err and "no such file" in err


class WorkersCluster:
    """A cluster seam that does what the client container does, with the driver and workers
    on loopback (tests/workers.py) in place of the container and dispy."""

    def solve_system(self, system, options, *, callback=None, checkpoint=None):
        import tempfile

        from sorctl.distributed import driver
        from sorctl.distributed.rows import system_rows
        from sorctl.engine import solve_container
        from tests.workers import workers

        with tempfile.TemporaryDirectory() as tmp:
            sent = solve_container._system_file(system, Path(tmp))
            source, b, x0, _ = system_rows(sent)  # as the client container reads it
            with workers({"a": 1, "b": 1}) as ex:
                result = driver.solve(source, b, ex, options, x0=x0, callback=callback)
            return solve_container._with_a_bytes(result, sent.stat().st_size)


def test_cluster_json_report_has_memory_per_process_and_a_bytes_per_link(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(api, "cluster_for_solve", lambda name: WorkersCluster())
    A, b = gallery.poisson2d(30)
    f = tmp_path / "p.npz"
    np.savez(f, **csr_arrays(A), b=b)
    code, out, err = run_cli(["solve", f, "--json", "--omega", "1.8"], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads(out)
    memory, sent = report["memory"], report["a_bytes"]
    assert list(memory) == ["host", "client", "workers"]
    assert memory["host"] >= memory["client"] > 0  # here one process plays both
    assert sorted(memory["workers"]) == ["a", "b"] and all(memory["workers"].values())
    assert list(sent) == ["host_to_client", "client_to_workers", "total"]
    assert sent["host_to_client"] == f.stat().st_size
    to_workers = sum(sent["client_to_workers"].values())
    assert sent["total"] == sent["host_to_client"] + to_workers
    # each entry of A once (its column and value), with its row's number and length
    entries = A.indices.nbytes + A.data.nbytes
    assert entries < to_workers <= entries + 32 * (A.shape[0] + 1)
