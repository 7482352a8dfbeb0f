"""`sorctl gen`: write a test system (model problems, random SPD) as .npz for `sorctl solve`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sorctl.errors import InputError
from sorctl.solver import gallery, io
from sorctl.solver.generated import ALL_KINDS, ANISOTROPIC_EPS, ANISOTROPIC_THETA

err = Console(stderr=True, highlight=False)


Kind = StrEnum("Kind", {k.replace("-", "_"): k for k in ALL_KINDS})  # type: ignore[misc]


def gen(
    kind: Annotated[Kind, typer.Argument(help="Which system.")],
    size: Annotated[
        int,
        typer.Option(
            "--size",
            min=1,
            help="Grid points per side (poisson*, anisotropic2d) or n (random, dense).",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .npz file to write.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (random-spd, dense-spd).")] = 0,
    density: Annotated[
        float, typer.Option("--density", min=0.0, max=1.0, help="Nonzero fraction (random-spd).")
    ] = 0.001,
    eps: Annotated[
        float, typer.Option("--eps", min=0.0, help="Weak-direction coefficient (anisotropic2d).")
    ] = ANISOTROPIC_EPS,
    theta: Annotated[
        float, typer.Option("--theta", help="Strong direction, radians (anisotropic2d).")
    ] = ANISOTROPIC_THETA,
) -> None:
    """Write a test system A x = b to an .npz file."""
    if density <= 0.0 or eps <= 0.0:
        raise InputError("--density and --eps must be positive")
    if output.suffix != ".npz":
        raise InputError(f"{output}: the output must end in .npz")
    A, b = gallery.make(kind.value, size, seed=seed, density=density, eps=eps, theta=theta)
    io.save_system(output, A, b)
    nnz = A.nnz if hasattr(A, "nnz") else A.size
    err.print(f"wrote {output}: {kind.value}, n = {A.shape[0]}, nnz = {nnz}", markup=False)


def register(app: typer.Typer) -> None:
    """Add `sorctl gen` to the sorctl app."""
    app.command("gen")(gen)
