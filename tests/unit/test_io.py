"""System files: every accepted layout reads to the same canonical system; writes are atomic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from sorctl.errors import InputError
from sorctl.solver import gallery
from sorctl.solver.io import atomic_write, load_system, load_vector, save_solution, save_system
from tests.systems import npz_arrays


@pytest.fixture
def small():
    return gallery.random_spd(40, 0.1, seed=3)


def same(system, A, b):
    got = system.A.toarray() if sp.issparse(system.A) else system.A
    want = A.toarray() if sp.issparse(A) else A
    return np.array_equal(got, want) and np.array_equal(system.b, b)


def test_dense_npz_plain_and_compressed(tmp_path, small):
    A, b = small[0].toarray(), small[1]
    np.savez(tmp_path / "d.npz", A=A, b=b)
    np.savez_compressed(tmp_path / "c.npz", A=A, b=b, x0=np.ones(40))
    d = load_system(tmp_path / "d.npz")
    c = load_system(tmp_path / "c.npz")
    assert isinstance(d.A, np.ndarray) and same(d, A, b) and d.x0 is None
    assert same(c, A, b) and np.array_equal(c.x0, np.ones(40))


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_scipy_save_npz_with_b_added(tmp_path, small, fmt):
    A, b = small
    M = A.asformat(fmt)
    # scipy.sparse.save_npz's keys, plus b in the same archive
    np.savez(
        tmp_path / "s.npz",
        **npz_arrays(M),
        format=np.array(fmt),
        b=b,
    )
    s = load_system(tmp_path / "s.npz")
    assert sp.isspmatrix_csr(s.A) and s.A.dtype == np.float64
    assert same(s, A, b)


def test_unsorted_duplicate_integer_csr_is_canonicalised(tmp_path):
    # row 0: (0, 2) given as 1 + 1 in reverse order with column 1; integer values
    data = np.array([-1, 1, 1, -1, 2], dtype=np.int32)
    indices = np.array([1, 0, 0, 0, 1])
    indptr = np.array([0, 3, 5])
    np.savez(
        tmp_path / "u.npz",
        data=data,
        indices=indices,
        indptr=indptr,
        shape=np.array([2, 2]),
        b=np.array([1, 2]),
    )
    s = load_system(tmp_path / "u.npz")
    assert s.A.has_canonical_format and s.A.dtype == np.float64 and s.b.dtype == np.float64
    assert np.array_equal(s.A.toarray(), [[2.0, -1.0], [-1.0, 2.0]])


def test_matrix_market_with_npy_and_mtx_rhs(tmp_path, small):
    A, b = small
    scipy.io.mmwrite(tmp_path / "a.mtx", A, symmetry="symmetric")
    np.save(tmp_path / "b.npy", b)
    scipy.io.mmwrite(tmp_path / "b.mtx", b.reshape(-1, 1))
    for rhs in ("b.npy", "b.mtx"):
        s = load_system(tmp_path / "a.mtx", rhs=tmp_path / rhs)
        assert np.allclose(s.A.toarray(), A.toarray(), rtol=1e-15) and np.allclose(s.b, b)


def test_round_trip_of_save_system(tmp_path, small):
    A, b = small
    save_system(tmp_path / "r.npz", A, b, x0=np.zeros(40))
    s = load_system(tmp_path / "r.npz")
    assert same(s, A, b) and s.source == str(tmp_path / "r.npz")


def test_nonsymmetric_allowed_by_flag(tmp_path):
    A = np.array([[2.0, 1.0], [0.0, 2.0]])
    np.savez(tmp_path / "n.npz", A=A, b=np.ones(2))
    with pytest.raises(InputError, match="not symmetric"):
        load_system(tmp_path / "n.npz")
    assert load_system(tmp_path / "n.npz", allow_nonsymmetric=True).n == 2


def test_symmetry_tolerance_is_relative(tmp_path):
    A = np.array([[2e6, 1e6], [1e6 * (1 + 1e-13), 2e6]])
    np.savez(tmp_path / "t.npz", A=A, b=np.ones(2))
    assert load_system(tmp_path / "t.npz").n == 2


def test_load_vector_from_solution_file(tmp_path):
    save_solution(tmp_path / "x.npz", np.arange(3.0), [1.0, 0.1], {"converged": True})
    assert np.array_equal(load_vector(tmp_path / "x.npz"), np.arange(3.0))


def test_save_solution_is_readable_without_pickle(tmp_path):
    save_solution(tmp_path / "sol.npz", np.ones(4), [1.0, 1e-9], {"iterations": 7})
    with np.load(tmp_path / "sol.npz", allow_pickle=False) as f:
        assert np.array_equal(f["x"], np.ones(4))
        assert list(f["residuals"]) == [1.0, 1e-9]
        assert json.loads(str(f["report"])) == {"iterations": 7}


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_interrupted_write_leaves_nothing(tmp_path, exc):
    target = tmp_path / "out.npz"
    target.write_bytes(b"old")

    def write(fh):
        fh.write(b"partial")
        raise exc("stop")

    with pytest.raises(exc):
        atomic_write(target, write)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]


def test_written_files_get_the_usual_mode(tmp_path):
    save_system(tmp_path / "m.npz", np.eye(2), np.ones(2))
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def _current_umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("fmt", [np.array(b"csr"), np.array(["csr", "csc"]), np.array(3)])
def test_format_key_variants(tmp_path, fmt):
    M = sp.csr_matrix(np.eye(3) * 2)
    np.savez(tmp_path / "f.npz", **npz_arrays(M), format=fmt, b=np.ones(3))
    if fmt.dtype.kind == "S":
        assert load_system(tmp_path / "f.npz").n == 3
    else:
        with pytest.raises(InputError, match="sparse format"):
            load_system(tmp_path / "f.npz")


def test_a_system_read_as_it_is_names_its_file(tmp_path, small):
    """A cluster solve sends an .npz read as it is instead of writing it again: only then."""
    A, b = small
    path = tmp_path / "s.npz"
    save_system(path, A, b)
    assert load_system(path).file == str(path)
    np.save(tmp_path / "b.npy", 2 * b)
    assert load_system(path, tmp_path / "b.npy").file is None  # b comes from elsewhere
    scipy.io.mmwrite(tmp_path / "s.mtx", A)
    assert load_system(tmp_path / "s.mtx", tmp_path / "b.npy").file is None
