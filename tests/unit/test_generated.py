"""Grid systems made row by row (sorctl.solver.generated, distributed.rows.GridRows): any rows of
the stencil matrix, checked against matrices built here from Kronecker products, and a cluster
solve whose workers make their own rows."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from sorctl.distributed.driver import plan
from sorctl.distributed.rows import FileRows, GridRows
from sorctl.errors import InputError
from sorctl.solver.generated import Grid, parse_gen
from tests.cli_runner import run_cli
from tests.drivers import cluster_solve as solve
from tests.systems import poisson2d, poisson3d
from tests.workers import workers

GRIDS = [
    Grid("poisson2d", 7),
    Grid("poisson2d", 2),
    Grid("poisson3d", 5),
    Grid("poisson3d", 1),
    Grid("anisotropic2d", 9, 0.001, np.pi / 6),
    Grid("anisotropic2d", 6),
]


def kron_stencil(grid: Grid) -> sp.csr_matrix:
    """The stencil matrix as a sum of Kronecker products of shifts, one per axis."""
    s, m = grid.stencil(), grid.m
    A = sp.csr_matrix((grid.n, grid.n))
    for offset in itertools.product(range(3), repeat=grid.dim):
        if s[offset] != 0:
            shifts = [sp.eye(m, k=o - 1) for o in offset]
            A = A + s[offset] * functools.reduce(sp.kron, shifts)
    return sp.csr_matrix(A)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g.kind}-{g.m}")
def test_any_rows_are_the_rows_of_the_stencil_matrix(grid):
    want = kron_stencil(grid)
    A = grid.matrix()
    assert A.has_canonical_format and (A != want).nnz == 0
    assert grid.nnz == want.nnz and np.array_equal(grid.indptr(), want.indptr)
    rows = np.random.default_rng(1).permutation(grid.n)[: max(1, grid.n // 3)]
    indptr, indices, data = grid.rows(rows)
    some = sp.csr_matrix((data, indices, indptr), shape=(rows.size, grid.n))
    assert (some != want[rows]).nnz == 0 and some.has_sorted_indices


def test_poisson_grids_are_the_kronecker_laplacians():
    assert (Grid("poisson2d", 6).matrix() != poisson2d(6)).nnz == 0
    assert (Grid("poisson3d", 4).matrix() != poisson3d(4)).nnz == 0


@pytest.mark.parametrize("grid", [Grid("poisson3d", 10), Grid("anisotropic2d", 24)],
                         ids=lambda g: g.kind)  # fmt: skip
def test_grid_rows_plan_as_the_file_of_the_same_system_does(grid, tmp_path):
    """Windows made as they are asked for: the same strips, blocks and colours as the file's
    windows read from disk."""
    A = grid.matrix()
    path = tmp_path / "g.npz"
    np.savez(path, data=A.data, indices=A.indices, indptr=A.indptr, shape=np.array(A.shape),
             format=np.array("csr"), b=grid.b())  # fmt: skip
    made, read = GridRows(grid, per=300), FileRows(path, per=300)
    assert (sp.vstack([w.matrix(grid.n) for w in made.windows()]) != A).nnz == 0
    for pipelined in (False, True):
        got = plan(made, {"a": 1, "b": 1}, pipelined=pipelined)
        want = plan(read, {"a": 1, "b": 1}, pipelined=pipelined)
        assert got.order == want.order and got.ncolours == want.ncolours
        assert all(np.array_equal(g, w) for g, w in zip(got.parts, want.parts, strict=True))


@pytest.mark.parametrize("method", ["sor", "cg-ssor"])
def test_workers_make_their_own_rows_and_solve(method):
    """No byte of A sent: each worker makes its blocks' rows; scipy's answer."""
    grid = Grid("anisotropic2d", 36, 0.01, 0.3)
    source = GridRows(grid)
    with workers({"a": 1, "b": 1}) as ex:
        res = solve(source, source.b, ex, method=method, rtol=1e-9, maxiter=5000)
    assert res.converged
    want = spla.spsolve(sp.csc_matrix(kron_stencil(grid)), np.ones(grid.n))
    np.testing.assert_allclose(res.x, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    assert res.extra["a_bytes"]["total"] == 0 and res.extra["made_rows"] == grid.n
    assert res.to_report()["nnz"] == grid.nnz


def test_a_lost_nodes_rows_are_made_again_by_the_node_that_takes_them():
    grid = Grid("poisson2d", 30)
    source = GridRows(grid)
    with workers({"n1": 1, "n2": 1, "n3": 1}, processes=True) as ex:

        def progress(iteration, residual):
            if iteration >= 20 and "n2" in ex.nodes():
                ex.kill("n2")

        res = solve(source, source.b, ex, omega=1.7, rtol=1e-10, maxiter=5000, check_every=10,
                    callback=progress)  # fmt: skip
    assert res.converged and res.extra["a_bytes"]["total"] == 0
    np.testing.assert_allclose(res.x, spla.spsolve(sp.csc_matrix(poisson2d(30)), source.b),
                               rtol=1e-6)  # fmt: skip
    assert 0 < res.extra["rows_reread"] < grid.n
    assert res.extra["made_rows"] == grid.n + res.extra["rows_reread"]


@pytest.mark.parametrize(
    "text,message",
    [("poisson3d", "KIND:SIZE"), ("heat2d:8", "KIND one of"), ("poisson2d:0", "positive"),
     ("poisson2d:x", "positive")],
)  # fmt: skip
def test_bad_gen_specs_are_refused_in_one_line(text, message):
    with pytest.raises(InputError, match=message):
        parse_gen(text)


def test_solve_gen_locally(capsys, monkeypatch):
    code, stdout, err = run_cli(
        ["solve", "--gen", "poisson3d:6", "--local", "--json"], capsys, monkeypatch
    )
    assert code == 0 and '"source": "poisson3d:6"' in stdout and '"n": 216' in stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["solve"], "a system file or --gen"),
        (["solve", "x.npz", "--gen", "poisson2d:4"], "a system file or --gen"),
        (["solve", "--gen", "poisson2d:4", "--rhs", "b.npy", "--local"], "not --gen"),
        (["solve", "--gen", "dense-spd:10000000", "--local"], "GB of memory"),
    ],
)
def test_solve_gen_refusals(args, message, capsys, monkeypatch):
    code, stdout, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and stdout == "" and message in err and "Traceback" not in err
