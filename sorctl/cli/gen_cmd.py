"""`sorctl gen`: write a test system (model problems, random SPD) as .npz for `sorctl solve`."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sorctl.errors import InputError
from sorctl.solver import gallery, io

err = Console(stderr=True, highlight=False)


class Kind(StrEnum):
    poisson2d = "poisson2d"
    poisson3d = "poisson3d"
    anisotropic2d = "anisotropic2d"
    random_spd = "random-spd"
    dense_spd = "dense-spd"


def _bytes_needed(kind: Kind, size: int) -> int:
    """Rough peak memory to build and write the system (several copies of the arrays)."""
    if kind == Kind.dense_spd:
        return 3 * 8 * size * size
    n, per_row = {
        Kind.poisson2d: (size**2, 5),
        Kind.anisotropic2d: (size**2, 9),
        Kind.poisson3d: (size**3, 7),
        Kind.random_spd: (size, 10),
    }[kind]
    return 6 * 12 * n * per_row


def _available_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


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
    ] = 0.01,
    theta: Annotated[
        float, typer.Option("--theta", help="Strong direction, radians (anisotropic2d).")
    ] = 0.7853981633974483,
) -> None:
    """Write a test system A x = b to an .npz file."""
    if density <= 0.0 or eps <= 0.0:
        raise InputError("--density and --eps must be positive")
    if output.suffix != ".npz":
        raise InputError(f"{output}: the output must end in .npz")
    need, have = _bytes_needed(kind, size), _available_bytes()
    if have is not None and need > have:
        raise InputError(
            f"{kind.value} --size {size} needs about {need / 1e9:.1f} GB of memory, "
            f"{have / 1e9:.1f} GB is available"
        )
    if kind == Kind.poisson2d:
        A, b = gallery.poisson2d(size)
    elif kind == Kind.poisson3d:
        A, b = gallery.poisson3d(size)
    elif kind == Kind.anisotropic2d:
        A, b = gallery.anisotropic2d(size, eps, theta)
    elif kind == Kind.random_spd:
        A, b = gallery.random_spd(size, density, seed)
    else:
        A, b = gallery.dense_spd(size, seed)
    io.save_system(output, A, b)
    nnz = A.nnz if hasattr(A, "nnz") else A.size
    err.print(f"wrote {output}: {kind.value}, n = {A.shape[0]}, nnz = {nnz}", markup=False)


def register(app: typer.Typer) -> None:
    """Add `sorctl gen` to the sorctl app."""
    app.command("gen")(gen)
