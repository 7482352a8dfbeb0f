"""Pure planning of the distributed solve: row blocks, block colouring, placement, block data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sorctl.distributed.blocks import links
from sorctl.distributed.node_block import matvec
from sorctl.distributed.partition import (
    block_graph,
    block_labels,
    colour_blocks,
    contiguous_blocks,
    place_blocks,
    slots_of,
)
from sorctl.distributed.schedule import phases, sweeps_before
from tests.blockref import held_blocks, made_blocks


def poisson2d(m: int) -> sp.csr_matrix:
    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    return sp.csr_matrix(sp.kron(sp.identity(m), t) + sp.kron(t, sp.identity(m)))


def random_spd(n: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    R = sp.random(n, n, density=density, random_state=rng, format="csr")
    S = R + R.T
    return sp.csr_matrix(S + sp.diags(np.asarray(abs(S).sum(axis=1)).ravel() + 1.0))


@pytest.mark.parametrize("nblocks", [1, 3, 8, 17])
def test_blocks_cover_every_row_once_with_balanced_work(nblocks):
    A = poisson2d(30)
    parts = contiguous_blocks(A, nblocks)
    assert len(parts) == nblocks
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(A.shape[0]))
    work = [np.diff(A.indptr)[p].sum() + p.size for p in parts]
    assert max(work) <= 1.2 * min(work)


def test_more_blocks_than_rows_gives_one_row_each():
    A = poisson2d(2)
    parts = contiguous_blocks(A, 10)
    assert sorted(p.size for p in parts) == [1, 1, 1, 1]


def test_labels_reject_overlap_and_gaps():
    with pytest.raises(ValueError, match="repeats"):
        block_labels(4, [np.array([0, 1]), np.array([1, 2, 3])])
    with pytest.raises(ValueError, match="cover"):
        block_labels(4, [np.array([0, 1]), np.array([2])])


def test_rcm_blocks_of_a_mesh_form_a_path_with_two_colours():
    A = poisson2d(40)
    parts = contiguous_blocks(A, 8)
    adj = block_graph(A, block_labels(A.shape[0], parts), len(parts))
    assert all(len(nb) <= 2 for nb in adj)
    assert colour_blocks(adj).max() == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_colouring_never_gives_coupled_blocks_one_colour(seed):
    A = random_spd(300, 0.02, seed)
    rng = np.random.default_rng(seed)
    parts = np.array_split(rng.permutation(300), 12)
    label = block_labels(300, parts)
    adj = block_graph(A, label, 12)
    colour = colour_blocks(adj)
    coo = A.tocoo()
    lr, lc = label[coo.row], label[coo.col]
    coupled = lr != lc
    assert coupled.any()
    assert np.all(colour[lr[coupled]] != colour[lc[coupled]])


def test_each_colour_spreads_over_all_cpus():
    colour = [0, 1, 0, 1, 0, 1, 0, 1]
    slots = slots_of({"n1": 2, "n2": 1, "n3": 1})
    assert sorted(slots) == ["n1", "n1", "n2", "n3"]
    node_of = place_blocks([10.0] * 8, colour, slots)
    for c in (0, 1):
        mine = [node_of[k] for k in range(8) if colour[k] == c]
        assert sorted(mine) == ["n1", "n1", "n2", "n3"]


def test_blocks_made_from_pieces_reproduce_a_times_x():
    A = random_spd(200, 0.03, 7)
    b = np.arange(200.0)
    parts = np.array_split(np.random.default_rng(7).permutation(200), 5)  # rows in no order
    x = np.random.default_rng(8).standard_normal(200)
    made = made_blocks(A, parts, b, x)
    Ax = A @ x
    for blk, held in made:
        nb = held.size
        blk["xext"][nb] = np.nan  # the spare slot is never read
        blk["xext"][nb + 1 :] = x[held.halo]
        np.testing.assert_allclose(matvec(blk, "xext"), Ax[held.rows], rtol=1e-12)
        np.testing.assert_array_equal(blk["diag"], A.diagonal()[held.rows])
        np.testing.assert_array_equal(blk["b"], b[held.rows])
        assert not np.isin(held.halo, held.rows).any() and held.nnz == A[held.rows].nnz
    # the links fill every halo slot exactly once, each with the value its sender holds
    blocks = [held for _, held in made]
    filled = [np.zeros(blk.halo.size, dtype=int) for blk in blocks]
    for lk in links(blocks, 200):
        assert lk.src != lk.dst
        np.testing.assert_array_equal(blocks[lk.src].rows[lk.rows], blocks[lk.dst].halo[lk.slots])
        filled[lk.dst][lk.slots] += 1
    assert all(np.all(f == 1) for f in filled)


def test_a_block_waits_for_each_neighbours_latest_sweep_before_its_own():
    sor, ssor = phases(3, False), phases(3, True)
    assert sor == [(0, False), (1, False), (2, False)]
    assert ssor == sor + [(2, True), (1, True), (0, True)]
    # SOR, step 4 is colour 1 of iteration 1: colour 0 swept twice (steps 0, 3), colour 2 once
    assert [sweeps_before(c, sor, 4) for c in range(3)] == [2, 1, 1]
    # SSOR, step 8 is colour 2 forward in iteration 1: before it colour 0 swept at steps 0, 5, 6,
    # colour 1 at 1, 4, 7 and colour 2 at 2, 3
    assert [sweeps_before(c, ssor, 8) for c in range(3)] == [3, 3, 2]
    assert sweeps_before(0, ssor, 0) == 0 and sweeps_before(0, ssor, 6) == 2


def test_grids_in_natural_order_split_into_one_way_strips():
    from sorctl.distributed.partition import pipeline_strips
    from tests.systems import anisotropic2d, poisson3d

    for A, m in ((poisson2d(20), 20), (poisson3d(8), 8)):
        strips = pipeline_strips(A, 3)
        assert strips is not None and len(strips) == 3
        label = block_labels(A.shape[0], strips)
        # strips are ranges of the grid's first coordinate, every one spanning the whole order
        assert all(np.ptp(np.arange(A.shape[0])[label == k] % m) < m // 2 for k in range(3))
        coo = sp.triu(A, 1).tocoo()  # upper entries (i < j): never from a higher strip down
        assert np.all(label[coo.row] <= label[coo.col])
    # a 9-point stencil couples (x, y) to (x - 1, y + 1): no one-way split; nor at random
    assert pipeline_strips(anisotropic2d(20), 2) is None
    assert pipeline_strips(random_spd(300, 0.02, 5), 2) is None
    assert pipeline_strips(poisson2d(5), 3) is None  # lines too short for 3 strips


def test_pipeline_pieces_and_waits():
    """Each link's entries grouped by the sender's chunk, in the order its sweep makes them;
    a reader's waits never decrease, never ask for a chunk ahead of its own (forward: the
    sender's chunk <= the reader's; backward: >=), and end with every piece."""
    from sorctl.distributed.partition import pipeline_strips
    from sorctl.distributed.pipeline import chunk_cuts, plan_pipeline

    A = poisson2d(24)
    n = A.shape[0]
    strips = pipeline_strips(A, 3)
    cuts = chunk_cuts(n, 6)
    blocks = held_blocks(A, strips, cuts)
    lks = links(blocks, n)
    pipe = plan_pipeline(n, blocks, lks, nchunks=6)
    for lk in lks:
        lp = pipe.pieces[(lk.src, lk.dst)]
        assert lp.forward == (lk.src < lk.dst)
        made = np.searchsorted(cuts, blocks[lk.src].rows[lk.rows], side="right") - 1
        order = np.diff(made)
        assert np.all(order >= 0) if lp.forward else np.all(order <= 0)
        steps = np.diff(lp.need)
        assert np.all(steps >= 0) if lp.forward else np.all(steps <= 0)
        assert lp.need.max() == lp.chunk.size
        for c in range(6):
            got = lp.chunk[: lp.need[c]]  # the pieces in hand before chunk c
            assert np.all(got <= c) if lp.forward else np.all(got >= c)
    assert all(bd[0] == 0 and bd[-1] == b.size for b, bd in zip(blocks, pipe.bounds, strict=True))
