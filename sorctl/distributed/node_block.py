"""A block as a worker holds it, and the passes over it that every kind of round shares.

A block is made from the rows sent to it (sorctl.distributed.blocks.Assembly) and kept split for
the sweeps (csr.split_tridiagonal's layout), with b and xext: the block's values of x, one unused
slot, then its halo (the values of other blocks' rows that its rows read). CG's vectors (zext,
pext, ...) have the same layout. The SOR worker (sorctl.distributed.node) and the CG rounds
(node_cg, node_pipeline) all read blocks through these functions.
"""

from __future__ import annotations

import numpy as np

from sorctl.solver.kernels.csr import Split as SplitArrays
from sorctl.solver.kernels.csr import split_matvec, split_residual_norm2
from sorctl.solver.kernels.eisenstat import Triangles, scaled_residual

Block = dict[str, np.ndarray]
# What each worker answers about a round beside its results (the driver sums them per worker);
# send_s: the sender threads' seconds in send (they overlap the sweep)
ROUND_FIGURES = ("sweep_s", "wait_s", "residual_s", "sent_bytes", "send_s")


def round_figures() -> dict[str, float]:
    """A round's figures, all zero."""
    return dict.fromkeys(ROUND_FIGURES, 0.0)


# A block's rows as the sweeps take them (csr.split_tridiagonal's layout), beside "b" and "xext"
SPLIT = ("fptr", "fidx", "fval", "lower", "diag", "upper")
# ... or, once a pipelined strip has made them of its split rows in place, as their scaled
# triangles (eisenstat.partition_scaled's, with "scale" beside them) and "diag"
TRIANGLES = ("tptr", "tmid", "tidx", "tval", "tlower", "tupper")
NO_VECTOR = np.empty(0)


def split_of(blk: Block) -> SplitArrays:
    """The block's rows as the kernels take them."""
    if "fptr" not in blk:
        raise LookupError("the block's rows are held as a pipeline strip's triangles only")
    return blk["fptr"], blk["fidx"], blk["fval"], blk["lower"], blk["diag"], blk["upper"]


def triangles_of(blk: Block) -> Triangles:
    """A pipelined strip's scaled triangles (TRIANGLES)."""
    return blk["tptr"], blk["tmid"], blk["tidx"], blk["tval"], blk["tlower"], blk["tupper"]


def residual_norm(blk: Block, rhs: str = "b", vec: str = "xext") -> float:
    """||rhs - A vec||^2 over the block's rows, in whichever form the block holds them."""
    if "tmid" in blk:
        fptr, _, fidx, fval, lower, upper = triangles_of(blk)
        return float(
            scaled_residual(fptr, fidx, fval, lower, upper, blk["scale"], blk[rhs], blk[vec],
                            NO_VECTOR)
        )  # fmt: skip
    return float(split_residual_norm2(*split_of(blk), blk[rhs], blk[vec]))


def matvec(blk: Block, vec: str) -> np.ndarray:
    """A vec over the block's rows (vec with its halo)."""
    y = np.empty(blk["diag"].size)
    split_matvec(*split_of(blk), blk[vec], y)
    return y


def set_halo(blk: Block, halo: np.ndarray) -> None:
    """The block's halo values of x (the driver's copy, sent with a wiring)."""
    blk["xext"][blk["diag"].size + 1 :] = halo
