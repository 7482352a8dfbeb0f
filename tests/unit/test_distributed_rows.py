"""Rows read a window at a time (sorctl.distributed.rows) and the blocks the workers make of
them: the same blocks, the same solve as from a matrix held whole, and a lost node's rows read
again from the file."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl.distributed.blocks import Assembly
from sorctl.distributed.driver import plan
from sorctl.distributed.node_block import SPLIT
from sorctl.distributed.node_cache import CACHE_ENV
from sorctl.distributed.partition import natural_blocks, pipeline_strips
from sorctl.distributed.rows import FileRows, MatrixRows
from sorctl.solver import io
from tests.blockref import made_blocks, reference_block
from tests.drivers import cluster_solve as solve
from tests.systems import anisotropic2d, poisson2d, poisson3d, random_spd
from tests.workers import workers

pytestmark = pytest.mark.timeout(300)


def with_duplicates(A: sp.csr_matrix) -> sp.csr_matrix:
    """A with every diagonal entry split in two (a file may hold duplicates; they are summed)."""
    A = sp.coo_matrix(A)
    d = A.row == A.col
    rows = np.r_[A.row, A.row[d]]
    cols = np.r_[A.col, A.col[d]]
    vals = np.r_[np.where(d, A.data / 2, A.data), A.data[d] / 2]
    out = sp.csr_matrix((vals, (rows, cols)), shape=A.shape)
    out.indptr, out.indices, out.data = _unsummed(rows, cols, vals, A.shape[0])
    return out


def _unsummed(rows, cols, vals, n):
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols[order].astype(np.int32), vals[order]


def write(path, A, b, compressed: bool, x0=None):
    arrays = {"data": A.data, "indices": A.indices, "indptr": A.indptr,
              "shape": np.array(A.shape), "format": np.array("csr"), "b": b}  # fmt: skip
    if x0 is not None:
        arrays["x0"] = x0
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


@pytest.mark.parametrize("compressed", [False, True])
def test_file_windows_are_the_matrix_rows_in_order(tmp_path, compressed):
    A = sp.csr_matrix(random_spd(400, 0.03, 7))
    path = tmp_path / "a.npz"
    write(path, A, np.ones(400), compressed)
    source = FileRows(path, per=500)
    assert source.n == 400 and np.array_equal(source.indptr, A.indptr)
    for start, stop in [(0, 400), (37, 251), (399, 400)]:
        wins = list(source.windows(start, stop))
        assert len(wins) > 1 or stop - start == 1
        assert wins[0].r0 == start and wins[-1].r1 == stop
        assert all(w.r1 == v.r0 for w, v in zip(wins, wins[1:], strict=False))
        got = sp.vstack([w.matrix(400) for w in wins]).toarray()
        np.testing.assert_array_equal(got, A[start:stop].toarray())
        pattern = list(source.windows(start, stop, values=False))
        assert all(w.data is None for w in pattern)
        assert np.array_equal(np.concatenate([w.indices for w in pattern]),
                              A.indices[A.indptr[start] : A.indptr[stop]])  # fmt: skip


@pytest.mark.parametrize("per", [7, 60, 10_000])
def test_blocks_made_from_pieces_are_the_blocks_cut_from_the_matrix(per):
    """Duplicates summed, halo numbered, rows split for the sweeps: as a block cut from the
    whole matrix, whatever the pieces' size and the rows' order."""
    A = with_duplicates(sp.csr_matrix(poisson2d(14)))
    n = A.shape[0]
    b = np.arange(n, dtype=float)
    parts = [np.r_[50:120][::-1], np.r_[0:50], np.r_[120:n]]  # one in reverse sweep order
    for rows, (blk, held) in zip(parts, made_blocks(A, parts, b, per=per), strict=True):
        halo, split = reference_block(A, rows)
        np.testing.assert_array_equal(held.halo, halo)
        for name, want in zip(SPLIT, split, strict=True):
            np.testing.assert_array_equal(blk[name], want, err_msg=name)
        np.testing.assert_array_equal(blk["b"], b[rows])


def test_pieces_that_are_not_the_blocks_next_rows_are_refused():
    A = sp.csr_matrix(poisson2d(4))
    sub = A[np.r_[0:3]]
    assembly = Assembly(np.r_[0:2, 5], 16, A.nnz)
    with pytest.raises(ValueError, match="not the block's next rows"):
        assembly.add(np.r_[0:3], sub.indptr, sub.indices, sub.data)
    with pytest.raises(ValueError, match="of the block's 3 rows arrived"):
        assembly.finish()


def test_a_grid_file_plans_as_the_matrix_does(tmp_path):
    """Strips and natural blocks from a file's pattern, read in windows, as from the matrix."""
    A = sp.csr_matrix(poisson3d(10))
    path = tmp_path / "g.npz"
    write(path, A, np.ones(A.shape[0]), True)
    source = FileRows(path, per=300)
    whole = pipeline_strips(A, 3)
    assert whole is not None
    streamed = pipeline_strips(source, 3)
    assert streamed is not None and all(
        np.array_equal(s, w) for s, w in zip(streamed, whole, strict=True)
    )
    assert pipeline_strips(FileRows(_file(tmp_path, anisotropic2d(20)), per=100), 2) is None
    p = plan(source, {"a": 1, "b": 1})
    cut = natural_blocks(A.indptr, 4)
    assert all(np.array_equal(x, y) for x, y in zip(p.parts, cut, strict=True))
    assert p.ncolours == 2  # a band: blocks in natural order form a path


def _file(tmp_path, A):
    path = tmp_path / "m.npz"
    write(path, sp.csr_matrix(A), np.ones(A.shape[0]), False)
    return path


@pytest.mark.parametrize("method", ["sor", "cg-ssor"])
def test_a_solve_from_a_file_is_the_solve_from_the_matrix(tmp_path, method):
    """Its rows streamed to the workers in windows: the same iterates as the matrix held whole
    and cut the same way, and scipy's answer."""
    A = sp.csr_matrix(poisson2d(40))
    n = A.shape[0]
    rng = np.random.default_rng(3)
    b, x0 = rng.standard_normal(n), rng.standard_normal(n)
    path = tmp_path / "s.npz"
    write(path, with_duplicates(A), b, True, x0)
    source = FileRows(path, per=700)
    parts = natural_blocks(A.indptr, 4)
    kw = {"method": method, "omega": 1.6, "rtol": 1e-9, "maxiter": 3000}
    with workers({"a": 1, "b": 1}) as ex:
        streamed = solve(source, source.b, ex, x0=source.x0, parts=parts, **kw)
        whole = solve(MatrixRows(A), b, ex, x0=x0, parts=parts, **kw)
    assert streamed.converged and streamed.iterations == whole.iterations
    np.testing.assert_allclose(streamed.x, whole.x, rtol=1e-12, atol=1e-12)
    want = spla.spsolve(sp.csc_matrix(A), b)
    np.testing.assert_allclose(streamed.x, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    assert streamed.to_report()["nnz"] == A.nnz  # duplicates summed on the workers


def test_a_lost_nodes_rows_are_read_again_from_the_file(tmp_path):
    A = sp.csr_matrix(poisson2d(30))
    n = A.shape[0]
    path = tmp_path / "s.npz"
    write(path, A, np.ones(n), False)
    source = FileRows(path, per=400)
    nodes = {"n1": 1, "n2": 1, "n3": 1}
    with workers(nodes, processes=True) as ex:

        def progress(iteration, residual):
            if iteration >= 20 and "n2" in ex.nodes():
                ex.kill("n2")

        res = solve(source, source.b, ex, omega=1.7, rtol=1e-10, maxiter=5000, check_every=10,
                    callback=progress)  # fmt: skip
    assert res.converged
    np.testing.assert_allclose(res.x, spla.spsolve(sp.csc_matrix(A), np.ones(n)), rtol=1e-6)
    moved = [ev["block"] for ev in res.extra["events"] if ev["event"] == "block_moved"]
    parts = plan(source, nodes).parts
    assert moved and res.extra["rows_reread"] == sum(parts[k].size for k in moved)


def test_only_csr_files_with_plain_layouts_stream(tmp_path):
    A = sp.csr_matrix(poisson2d(6))
    b = np.ones(A.shape[0])
    io.save_system(tmp_path / "saved.npz", A, b)
    assert FileRows.streams(tmp_path / "saved.npz")
    sp.save_npz(tmp_path / "csc.npz", sp.csc_matrix(A))
    with np.load(tmp_path / "csc.npz") as z:
        np.savez(tmp_path / "csc_b.npz", **dict(z), b=b)
    assert not FileRows.streams(tmp_path / "csc_b.npz")
    np.savez(tmp_path / "dense.npz", A=A.toarray(), b=b)
    assert not FileRows.streams(tmp_path / "dense.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert not FileRows.streams(tmp_path / "junk.npz")


@pytest.mark.parametrize("method", ["sor", "cg-ssor"])
def test_a_second_solve_of_the_same_file_sends_no_rows(tmp_path, monkeypatch, method):
    """The workers keep their blocks on disk: the next solve of the file (another b, another
    rtol) on new worker processes sends none of A, and solves the new system."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "kept"))
    A = sp.csr_matrix(poisson2d(40))
    n = A.shape[0]
    path = tmp_path / "s.npz"
    write(path, A, np.ones(n), True)
    source = FileRows(path, per=500)
    kw = {"method": method, "keep": f"{path}:1"}
    with workers({"a": 1, "b": 1}, processes=True) as ex:
        first = solve(source, source.b, ex, rtol=1e-6, **kw)
    assert first.extra["a_bytes"]["total"] > A.data.nbytes and first.extra["kept_blocks"] == 0
    b2 = np.random.default_rng(5).standard_normal(n)
    with workers({"a": 1, "b": 1}, processes=True) as ex:
        second = solve(source, b2, ex, rtol=1e-9, **kw)
    assert second.extra["a_bytes"]["total"] == 0
    assert second.extra["kept_blocks"] == second.extra["blocks"]
    want = spla.spsolve(sp.csc_matrix(A), b2)
    assert second.converged
    np.testing.assert_allclose(second.x, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    # another file: its rows are sent, and the first file's blocks are dropped
    with workers({"a": 1, "b": 1}, processes=True) as ex:
        other = solve(source, b2, ex, rtol=1e-6, method=method, keep=f"{path}:2")
    assert other.extra["kept_blocks"] == 0 and other.extra["a_bytes"]["total"] > 0
    kept_now = {p.name.split("-")[0] for p in (tmp_path / "kept").iterdir()}
    assert len(kept_now) == 1


def test_a_block_kept_in_part_is_sent_again(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "kept"))
    A = sp.csr_matrix(poisson2d(30))
    path = tmp_path / "s.npz"
    write(path, A, np.ones(A.shape[0]), False)
    source = FileRows(path)
    with workers({"a": 1, "b": 1}, processes=True) as ex:
        solve(source, source.b, ex, rtol=1e-6, keep="k")
    blocks = sorted((tmp_path / "kept").iterdir())
    assert len(blocks) == 4
    (blocks[0] / "done").unlink()  # as if the node stopped while writing it
    (blocks[1] / "fval.npy").write_bytes(b"garbage")
    with workers({"a": 1, "b": 1}, processes=True) as ex:
        again = solve(source, source.b, ex, rtol=1e-6, keep="k")
    assert again.converged and again.extra["kept_blocks"] == 2


@pytest.mark.parametrize("method", ["sor", "cg-ssor"])
def test_a_lost_nodes_values_come_back_from_its_buddy_not_from_the_start(method):
    """No gather ran before the loss: the moved blocks restart from the copy their buddy kept
    at the end of the last round, so the residual does not jump back to the start's."""
    A = sp.csr_matrix(poisson2d(40 if method == "sor" else 120))  # CG: lost well before the end
    b = np.ones(A.shape[0])
    seen: list[tuple[int, float]] = []
    killed_at: list[int] = []
    with workers({"n1": 1, "n2": 1, "n3": 1}, processes=True) as ex:

        def progress(iteration, residual):
            seen.append((iteration, residual))
            if iteration >= 30 and not killed_at:
                killed_at.append(len(seen))
                ex.kill("n2")  # between rounds; the next round finds it gone

        res = solve(A, b, ex, method=method, omega=1.7 if method == "sor" else 1.5, rtol=1e-9,
                    maxiter=5000, check_every=10, callback=progress)  # fmt: skip
    assert res.converged
    kinds = [ev["event"] for ev in res.extra["events"]]
    assert "node_lost" in kinds and "x_recovered" in kinds, kinds
    moved = [ev["block"] for ev in res.extra["events"] if ev["event"] == "block_moved"]
    assert res.extra["recovered_rows"] == sum(
        plan(A, {"n1": 1, "n2": 1, "n3": 1}, pipelined=method == "cg-ssor").parts[k].size
        for k in moved
    )
    before = seen[killed_at[0] - 1][1]
    after = max(r for _, r in seen[killed_at[0] :])
    assert after <= 10 * before, (before, after)
