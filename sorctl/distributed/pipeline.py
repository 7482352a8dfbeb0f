"""The pipelined sweep over strips (sorctl.distributed.partition.pipeline_strips), planned.

Strips couple one way in A's own order: a row reads only lower strips' earlier rows below the
diagonal and higher strips' later rows above it. So a forward sweep (or triangular solve) of
the whole matrix in its own order runs on every strip at once, chunk by chunk: the rows are cut
into chunks at the same global row numbers in every strip, and a strip's chunk c waits only for
the pieces of its lower neighbours' values that its rows read, which come from their chunks up to
about c. A backward sweep runs the other way: chunks from the last, waiting on higher strips.
Each link (the values one block reads from another, sorctl.distributed.blocks.Link) is used in
one direction only and sent piece by piece, one piece per chunk of its sender that holds any of
its values; this plan says which piece is which and how many a reader needs before each chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sorctl.distributed.blocks import Held, Link

CHUNKS = 16  # per sweep: more is a shorter pipeline fill, fewer is fewer messages


@dataclass
class LinkPieces:
    """One link's values in send order, grouped into pieces, and the reader's waits."""

    forward: bool  # sent during forward sweeps (sender in a lower strip) or backward ones
    ptr: np.ndarray  # piece p is entries ptr[p]:ptr[p+1] of the (reordered) link
    need: np.ndarray  # need[c]: pieces the reader must hold before it sweeps its chunk c
    chunk: np.ndarray  # the sender's chunk that makes each piece


@dataclass
class Pipeline:
    bounds: list[np.ndarray]  # per block: local row where each chunk starts (nchunks + 1)
    pieces: dict[tuple[int, int], LinkPieces]  # per link (src, dst)


def chunk_cuts(n: int, nchunks: int = CHUNKS) -> np.ndarray:
    """The global rows where each chunk starts, and n."""
    return np.linspace(0, n, nchunks + 1).round().astype(np.int64)


def plan_pipeline(n: int, blocks: list[Held], lks: list[Link], nchunks: int = CHUNKS) -> Pipeline:
    """Cut every block (block k is strip k, lowest first) into `nchunks` chunks at the same
    global rows (chunk_cuts: the blocks' first_read and last_read were made with them) and
    reorder each link's entries (in place) by the chunk of its sender that computes them."""
    cuts = chunk_cuts(n, nchunks)
    bounds = [np.searchsorted(blk.rows, cuts).astype(np.int64) for blk in blocks]

    def chunk_of(rows: np.ndarray) -> np.ndarray:
        """The chunk of each of these global rows (no n-vector of them: the driver holds few)."""
        return np.searchsorted(cuts, rows, side="right") - 1

    pieces = {}
    for lk in lks:
        src, dst = blocks[lk.src], blocks[lk.dst]
        forward = lk.src < lk.dst
        order = np.argsort(chunk_of(src.rows[lk.rows]), kind="stable")
        if not forward:
            order = order[::-1]  # backward sweeps send from the last chunk down
        lk.rows, lk.slots = lk.rows[order], lk.slots[order]
        made = chunk_of(src.rows[lk.rows])
        starts = np.flatnonzero(np.r_[True, made[1:] != made[:-1]])
        ptr = np.r_[starts, made.size].astype(np.int64)
        piece_chunk = made[starts]
        # the reader's chunks that read each entry: first (forward) or last (backward) of them
        read_by = dst.first_read if forward else dst.last_read
        assert read_by is not None, "a strip's record made without the pipeline's cuts"
        readers = read_by[lk.slots]
        need = np.zeros(nchunks, dtype=np.int64)
        steps = range(nchunks) if forward else range(nchunks - 1, -1, -1)
        worst = -1 if forward else nchunks  # the furthest sender chunk read so far
        for c in steps:
            read = made[readers == c]
            if read.size:
                worst = max(worst, int(read.max())) if forward else min(worst, int(read.min()))
            # pieces go out in sweep order: count those up to the furthest chunk read
            need[c] = int(np.sum(piece_chunk <= worst) if forward else np.sum(piece_chunk >= worst))
        pieces[(lk.src, lk.dst)] = LinkPieces(forward, ptr, need, piece_chunk)
    return Pipeline(bounds, pieces)
