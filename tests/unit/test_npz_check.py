"""The windowed check of an .npz of CSR arrays refuses exactly what load_system refuses, with the
same line, on systems made here (not tuned for it), stored and deflated, with windows small
enough to end at many different rows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sorctl.errors import InputError
from sorctl.solver import npz_check
from sorctl.solver.io import load_system
from sorctl.solver.npz_check import check_npz
from tests.systems import npz_arrays, poisson3d, random_spd

WINDOWS = (13, 100, 777, 1 << 20)  # bytes of indices + data: one entry, a few rows, all


def spd() -> sp.csr_matrix:
    return random_spd(300, 0.02, seed=7)


def arrays(A, **extra) -> dict[str, np.ndarray]:
    return {**npz_arrays(sp.csr_matrix(A)), "b": np.ones(A.shape[0]), **extra}


def with_entry(A, i: int, j: int, value: float) -> sp.csr_matrix:
    L = sp.lil_matrix(A)
    L[i, j] = value
    return sp.csr_matrix(L)


def jitter(A, most: float) -> sp.csr_matrix:
    """A with every entry above the diagonal moved by up to `most` (signs and sizes random)."""
    J = sp.csr_matrix(A, copy=True)
    rng = np.random.default_rng(5)
    off = np.repeat(np.arange(A.shape[0]), np.diff(J.indptr)) < J.indices
    J.data[off] += most * rng.uniform(-1, 1, off.sum())
    return J


def bad_indptr(A, how: str) -> dict[str, np.ndarray]:
    a = arrays(A)
    ip = a["indptr"].copy()
    if how == "decreasing":
        ip[40] = ip[42]
    elif how == "start":
        ip[0] = 1
    elif how == "end":
        ip[-1] -= 1
    elif how == "length":
        ip = ip[:-3]
    a["indptr"] = ip
    return a


def cases() -> dict[str, dict[str, np.ndarray]]:
    A = spd()
    n = A.shape[0]
    scale = abs(A).max()
    nan = A.copy()
    nan.data[A.nnz // 2] = np.nan
    zero = A.tolil()
    zero[17, 17] = 0.0
    negative = A.tolil()
    negative[123, 123] = -2.0
    out_of_range = arrays(A)
    out_of_range["indices"] = out_of_range["indices"].copy()
    out_of_range["indices"][A.nnz // 3] = n + 5
    negative_index = arrays(A)
    negative_index["indices"] = negative_index["indices"].copy()
    negative_index["indices"][7] = -1
    # the same matrix with duplicates: entries split in two, rows' order shuffled
    coo = A.tocoo()
    half = coo.data / 2
    rng = np.random.default_rng(3)
    order = rng.permutation(2 * coo.nnz)
    dup = sp.coo_matrix(
        (
            np.r_[half, half][order],
            (np.r_[coo.row, coo.row][order], np.r_[coo.col, coo.col][order]),
        ),
        shape=A.shape,
    ).tocsr(copy=False)
    dup_arrays = dict(
        data=dup.data, indices=dup.indices, indptr=dup.indptr, shape=np.array(A.shape), b=np.ones(n)
    )
    return {
        "random-spd": arrays(A),
        "poisson3d": arrays(poisson3d(6)),
        "csc": {**npz_arrays(A.tocsc()), "format": np.array("csc"), "b": np.ones(n)},
        "duplicates-unsorted": dup_arrays,
        "int32-data-big-endian": arrays(
            sp.csr_matrix(poisson3d(5), dtype=np.int32), shape=np.array([125, 125])
        )
        | {"data": sp.csr_matrix(poisson3d(5)).data.astype(">i4")},
        "x0-in-file": arrays(A, x0=np.zeros(n)),
        "nearly-symmetric": arrays(with_entry(A, 3, 200, A[3, 200] + 1e-14 * abs(A).max())),
        "nonsymmetric-one-entry": arrays(with_entry(A, 3, 200, A[3, 200] + 0.25)),
        # just beyond and just within load_system's tolerance (1e-10 max|A|), one pair
        "nonsymmetric-3x-tolerance": arrays(with_entry(A, 3, 200, A[3, 200] + 3e-10 * scale)),
        "symmetric-within-tolerance": arrays(with_entry(A, 3, 200, A[3, 200] + 0.6e-10 * scale)),
        # every pair off by up to 0.9 of the tolerance: within it, though each row's sum is not
        "many-pairs-within-tolerance": arrays(jitter(A, 0.9e-10 * scale)),
        "many-pairs-beyond-tolerance": arrays(jitter(A, 1e-3 * scale)),
        "nonsymmetric-new-entry": arrays(with_entry(A, 250, 5, 1e-6)),
        "nan": arrays(nan),
        "zero-diagonal": arrays(zero),
        "negative-diagonal": arrays(negative),
        "wrong-length-b": arrays(A, b=np.ones(n - 1)),
        "2-d-b": arrays(A, b=np.ones((n, 1))),
        "nan-b": arrays(A, b=np.r_[np.ones(n - 1), np.nan]),
        "no-b": npz_arrays(A),
        "wrong-length-x0": arrays(A, x0=np.ones(n + 1)),
        "indptr-decreasing": bad_indptr(A, "decreasing"),
        "indptr-start": bad_indptr(A, "start"),
        "indptr-end": bad_indptr(A, "end"),
        "indptr-length": bad_indptr(A, "length"),
        "indices-out-of-range": out_of_range,
        "indices-negative": negative_index,
        "non-square": arrays(sp.random(5, 7, density=0.5, random_state=1), b=np.ones(5)),
        "empty": {**npz_arrays(sp.csr_matrix((0, 0))), "b": np.zeros(0)},
        "pickled-data": arrays(A) | {"data": np.array([{"a": 1}] * A.nnz, dtype=object)},
        "pickled-b": arrays(A) | {"b": np.array([None] * n, dtype=object)},
        "complex-data": arrays(A) | {"data": A.data.astype(complex)},
        "float-indices": arrays(A) | {"indices": A.indices.astype(float)},
        "data-length": arrays(A) | {"data": A.data[:-1]},
        "coo-format": arrays(A, format=np.array("coo")),
        "bad-shape": arrays(A, shape=np.array([n, n, 1])),
    }


CASES = cases()


def outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except InputError as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_same_verdict_and_line_as_the_whole_matrix_check(kind, compressed, tmp_path):
    path = tmp_path / f"{kind}.npz"
    (np.savez_compressed if compressed else np.savez)(path, **CASES[kind])
    for allow in (False, True):
        whole = outcome(load_system, path, allow_nonsymmetric=allow)
        for window in WINDOWS:
            got = outcome(check_npz, path, allow_nonsymmetric=allow, window_bytes=window)
            if isinstance(whole, str):
                assert got == whole, (window, allow)
            else:
                assert got == npz_check.SystemFile(str(path), str(path), whole.n, whole.nnz)


def test_the_cases_cover_refusals_and_acceptances(tmp_path):
    verdicts = {}
    for kind, arrs in CASES.items():
        np.savez(tmp_path / "c.npz", **arrs)
        verdicts[kind] = isinstance(outcome(load_system, tmp_path / "c.npz"), str)
    accepted = ["random-spd", "csc", "duplicates-unsorted", "nearly-symmetric", "x0-in-file",
                "symmetric-within-tolerance", "many-pairs-within-tolerance"]  # fmt: skip
    refused = ["nonsymmetric-one-entry", "nonsymmetric-3x-tolerance",
               "many-pairs-beyond-tolerance", "nan", "zero-diagonal", "wrong-length-b",
               "indptr-decreasing"]  # fmt: skip
    assert [verdicts[k] for k in accepted + refused] == [False] * len(accepted) + [True] * len(
        refused
    )


def test_what_only_a_whole_read_handles_is_left_to_it(tmp_path):
    A = spd()
    np.savez(tmp_path / "dense.npz", A=A.toarray(), b=np.ones(300))
    assert check_npz(tmp_path / "dense.npz") is None
    f = tmp_path / "fortran.npz"
    np.savez(f, **arrays(A) | {"data": np.asfortranarray(A.data.reshape(-1, 2))})
    if A.nnz % 2 == 0:
        assert check_npz(f) is None
    assert check_npz(tmp_path / "dense.npz") is None
    assert not npz_check.is_csr_npz(tmp_path / "dense.npz")
    assert not npz_check.is_csr_npz(tmp_path / "missing.npz")


def test_a_corrupt_member_is_one_line(tmp_path):
    f = tmp_path / "c.npz"
    np.savez(f, **arrays(poisson3d(8)))
    raw = bytearray(f.read_bytes())
    at = raw.find(b"indices.npy") + 400  # inside the stored indices
    raw[at : at + 40] = b"\xff" * 40
    f.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"truncated or corrupt \.npz archive"):
        check_npz(f, window_bytes=64)


@pytest.mark.parametrize("rhs", ["good.npy", "short.npy", "nan.npy", "missing.npy"])
def test_a_separate_right_hand_side_is_checked_as_load_system_checks_it(rhs, tmp_path):
    A = spd()
    f = tmp_path / "s.npz"
    np.savez(f, **npz_arrays(A))  # no b of its own
    np.save(tmp_path / "good.npy", np.arange(300.0))
    np.save(tmp_path / "short.npy", np.ones(299))
    np.save(tmp_path / "nan.npy", np.r_[np.nan, np.ones(299)])
    whole = outcome(load_system, f, tmp_path / rhs)
    got = outcome(check_npz, f, tmp_path / rhs, window_bytes=100)
    if isinstance(whole, str):
        assert got == whole
    else:
        assert np.array_equal(got.b, whole.b) and not got.as_is and got.nnz == whole.nnz
