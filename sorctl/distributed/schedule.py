"""The order of sweeps in one outer iteration, and how many sweeps of a block precede a step.

An outer iteration is a list of phases, each one colour swept in one direction: SOR sweeps the
colours 0, 1, ..., C-1 forward; SSOR then sweeps them back C-1, ..., 0 backward. Steps number the
phases of successive iterations (step s is phase s % P of iteration s // P). A block sweeps once in
every phase of its colour and sends its new values to each block it couples to, so a neighbour
about to sweep at step s has waited for exactly sweeps_before(colour, s) messages from it: the
values of its latest sweep before s, which is what SOR in the (colour, block, row) order reads.
"""

from __future__ import annotations


def phases(ncolours: int, ssor: bool) -> list[tuple[int, bool]]:
    """(colour, backward) for each phase of one outer iteration."""
    forward = [(c, False) for c in range(ncolours)]
    return forward + [(c, True) for c in reversed(range(ncolours))] if ssor else forward


def sweeps_before(colour: int, plan: list[tuple[int, bool]], step: int) -> int:
    """How many times a block of `colour` has swept before step `step` (counting from step 0)."""
    mine = [p for p, (c, _) in enumerate(plan) if c == colour]
    whole, part = divmod(step, len(plan))
    return whole * len(mine) + sum(1 for p in mine if p < part)
