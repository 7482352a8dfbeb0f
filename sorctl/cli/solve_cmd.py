"""`sorctl solve`: read a system, solve it on a running cluster or locally, report the answer.

Progress and notes go to stderr; stdout holds only the answer (a summary, or one JSON object
with --json). Exit codes: 0 converged, 3 not converged or diverged, 2 bad input, 130 Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from sorctl import api
from sorctl.cli.exit_codes import EXIT_INTERRUPTED, EXIT_NOT_CONVERGED, EXIT_OK
from sorctl.errors import ClusterError, InputError, SorctlError
from sorctl.options import DEFAULTS, METHODS
from sorctl.solver import gallery, io, npz_check
from sorctl.solver.generated import GRID_KINDS, Grid, parse_gen
from sorctl.solver.npz_check import SystemFile
from sorctl.solver.peak_memory import note_host_peak
from sorctl.solver.result import SolveResult

err = Console(stderr=True, highlight=False)


Method = StrEnum("Method", {m: m for m in METHODS})  # type: ignore[misc]
DEFAULT_METHOD = Method(DEFAULTS.method)


class Progress:
    """The (iteration, residual) stream on stderr: a live status line on a terminal, otherwise
    a plain line at most once a second (and always the last one)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.status = err.status("starting") if err.is_terminal and not quiet else None
        self.last_line = 0.0
        self.pending: str | None = None

    def __enter__(self) -> Progress:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.stop()
        if self.pending and not self.quiet:
            err.print(self.pending, markup=False)

    def __call__(self, iteration: int, residual: float) -> None:
        text = f"iteration {iteration}: relative residual {residual:.3e}"
        if self.status is not None:
            self.status.update(text)
            return
        now = time.monotonic()
        if now - self.last_line >= 1.0 and not self.quiet:
            err.print(text, markup=False)
            self.last_line = now
            self.pending = None
        else:
            self.pending = text


def _check_output_paths(output: Path | None, plot: Path | None) -> None:
    """Fail before the solve, not after it, on an output that cannot be written."""
    for path in (output, plot):
        if path is not None and not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise InputError(f"{path}: directory {path.parent} does not exist")
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SorctlError("--plot needs matplotlib: pip install 'sorctl[plot]'") from None


def _write_plot(path: Path, result: SolveResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = result.extra.get("check_iterations")
    if not isinstance(its, list) or len(its) != len(result.residuals):
        its = list(range(len(result.residuals)))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(
        its,
        [r if r and r > 0 and math.isfinite(r) else float("nan") for r in result.residuals],
        marker=".",
    )
    ax.set_xlabel("iteration (sweeps)")
    ax.set_ylabel("relative residual ||b - Ax|| / ||b||")
    ax.set_title(
        f"{result.method}, omega = {result.omega:.4f} ({result.omega_source}), {result.backend}"
    )
    ax.grid(True, which="both", alpha=0.3)
    fmt = path.suffix.lstrip(".") or "png"
    io.atomic_write(path, lambda fh: fig.savefig(fh, format=fmt, dpi=100, bbox_inches="tight"))
    plt.close(fig)


def _summary(result: SolveResult, source: str) -> Table:
    table = Table(title=f"sorctl solve {source}", show_header=False)
    rel = result.relative_residual
    for key, value in (
        ("converged", f"{result.converged} ({result.reason})"),
        ("iterations", str(result.iterations)),
        ("relative residual", f"{rel:.3e}" if math.isfinite(rel) else str(rel)),
        ("omega", f"{result.omega:.6f} ({result.omega_source})"),
        ("method", result.method),
        ("n / nnz", f"{result.n} / {result.nnz}"),
        ("time", f"{result.time_s:.3f} s"),
        ("backend", result.backend),
    ):
        table.add_row(key, value)
    return table


def _cluster_and_file(
    file: Path, rhs, x0, cluster: str | None, local: bool, allow_nonsymmetric: bool
) -> tuple[api.Cluster | None, SystemFile | None] | None:
    """A cluster solve of an .npz of CSR arrays: (the cluster, the file checked in windows),
    never held whole here (the client container reads the file as it is, or a copy with --rhs
    or --x0 in it); (None, None) when no cluster runs (the local backend reads it whole, once),
    (target, None) when only a whole read handles the file. None for anything else: the system
    is read whole, as before."""
    if local or not npz_check.is_csr_npz(file):
        return None
    lookup_error = None
    try:
        target = api.cluster_for_solve(cluster)
    except ClusterError as exc:
        target, lookup_error = None, exc
    if target is None and lookup_error is None:  # the local backend reads the system whole
        return None, None
    system = npz_check.check_npz(file, rhs, allow_nonsymmetric=allow_nonsymmetric)
    if lookup_error is not None:
        # the file's refusals come before the cluster's, as on the whole-read path: a bad file
        # is exit 2 whether or not the cluster it names runs
        if system is None:
            _whole_system(file, rhs, x0, allow_nonsymmetric)
        raise lookup_error
    if system is not None and x0 is not None:
        system = dataclasses.replace(system, x0=_starting_guess(x0, system.n))
    return target, system


def _from_file(
    file: Path, rhs, x0, cluster: str | None, local: bool, allow_nonsymmetric: bool
) -> tuple[io.System | SystemFile, api.Cluster | None]:
    """(the system of a file, the cluster to solve it on or None): checked in windows for a
    cluster when it can be, else read whole."""
    streamed = _cluster_and_file(file, rhs, x0, cluster, local, allow_nonsymmetric)
    if streamed is not None:
        target, system = streamed
        return system or _whole_system(file, rhs, x0, allow_nonsymmetric), target
    whole = _whole_system(file, rhs, x0, allow_nonsymmetric)
    target = None if local else api.cluster_for_solve(cluster)
    if target is not None and io.file_kind(file) == "mtx":
        err.print(
            f"note: {file} is read whole on this host (an .npz of CSR arrays is checked "
            "in windows and sent as it is)",
            markup=False,
            soft_wrap=True,
        )
    return whole, target


def _whole_system(file: Path, rhs, x0, allow_nonsymmetric: bool) -> io.System:
    system = io.load_system(file, rhs, allow_nonsymmetric=allow_nonsymmetric)
    if x0 is not None:
        # no longer the file as it is: a cluster solve writes the system out again
        system = dataclasses.replace(system, x0=_starting_guess(x0, system.n), file=None)
    return system


def _starting_guess(x0: Path, n: int) -> np.ndarray:
    guess = io.load_vector(x0)
    if guess.shape != (n,):
        raise InputError(f"{x0}: starting guess has shape {guess.shape}, A is {n} x {n}")
    if not np.all(np.isfinite(guess)):
        raise InputError(f"{x0}: starting guess contains NaN or Inf")
    return np.ascontiguousarray(guess, dtype=np.float64)


def _generated(gen: str, rhs, x0, local: bool, cluster: str | None):
    """(the system, its cluster or None) of --gen KIND:SIZE: a grid the cluster's nodes make row
    by row, or (locally, or a kind only a whole matrix makes) the system made whole here."""
    if rhs is not None or x0 is not None:
        raise InputError("--rhs and --x0 go with a system file, not --gen (its b is all ones)")
    kind, size = parse_gen(gen)
    target = None if local else api.cluster_for_solve(cluster)
    if target is not None and kind in GRID_KINDS:
        return Grid(kind, size), target
    if target is not None:
        err.print(f"note: {kind} is made whole on this host and sent (the nodes make only "
                  f"{', '.join(GRID_KINDS)})", markup=False, soft_wrap=True)  # fmt: skip
    A, b = gallery.make(kind, size)
    return io.System(A=A, b=b, x0=None, source=f"{kind}:{size}"), target


def solve(
    file: Annotated[
        Path | None,
        typer.Argument(help="System file: .npz (A or CSR arrays, b) or .mtx (or use --gen)."),
    ] = None,
    rhs: Annotated[
        Path | None, typer.Option("--rhs", help="Right-hand side (.npy or .mtx).")
    ] = None,
    omega: Annotated[
        float | None,
        typer.Option(
            "--omega", help="Relaxation factor in (0, 2); by default estimated (Young's formula)."
        ),
    ] = None,
    rtol: Annotated[
        float, typer.Option("--rtol", min=0.0, help="Stop when ||b-Ax|| <= rtol ||b||.")
    ] = DEFAULTS.rtol,
    atol: Annotated[
        float, typer.Option("--atol", min=0.0, help="... or when ||b-Ax|| <= atol.")
    ] = DEFAULTS.atol,
    max_iter: Annotated[
        int, typer.Option("--max-iter", min=1, help="Most sweeps.")
    ] = DEFAULTS.maxiter,
    method: Annotated[
        Method, typer.Option("--method", help="Sweep order, or cg-ssor: SSOR-preconditioned CG.")
    ] = DEFAULT_METHOD,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write x, the residual history and the report (.npz)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Plot the residual history to this image (needs matplotlib)."),
    ] = None,
    allow_nonsymmetric: Annotated[
        bool,
        typer.Option(
            "--allow-nonsymmetric", help="Accept a non-symmetric A (SOR may then diverge)."
        ),
    ] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Cluster to solve on (default: the one running cluster; local when none runs).",
        ),
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Solve on this machine, never a cluster.")
    ] = False,
    x0: Annotated[
        Path | None, typer.Option("--x0", help="Starting guess (.npy, .mtx, or .npz with x or x0).")
    ] = None,
    inner_sweeps: Annotated[
        int, typer.Option("--inner-sweeps", min=1, help="Cluster: SOR sweeps per block and pass.")
    ] = DEFAULTS.inner_sweeps,
    blocks: Annotated[
        int | None,
        typer.Option("--blocks", min=1, help="Cluster: row blocks (default: two per node CPU)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="Cluster: keep the last x here (resume with --x0)."),
    ] = None,
    gen: Annotated[
        str | None,
        typer.Option(
            "--gen",
            metavar="KIND:SIZE",
            help="Solve a `sorctl gen` system instead of a file (b = 1); on a cluster, each "
            "node makes its own rows of the grid kinds.",
        ),
    ] = None,
) -> None:
    """Solve A x = b by SOR on the running cluster, or locally when none runs."""
    if (file is None) == (gen is None):
        raise InputError("give a system file or --gen KIND:SIZE (one of the two)")
    if omega is not None and not 0.0 < omega < 2.0:
        raise InputError(f"--omega must lie in (0, 2), got {omega}")
    _check_output_paths(output, plot)
    _check_output_paths(checkpoint, None)
    options = DEFAULTS.with_(
        omega=omega,
        rtol=rtol,
        atol=atol,
        maxiter=max_iter,
        method=method.value,
        inner_sweeps=inner_sweeps,
        blocks=blocks,
    )
    if gen is not None:
        system, target = _generated(gen, rhs, x0, local, cluster)
    else:
        assert file is not None
        system, target = _from_file(file, rhs, x0, cluster, local, allow_nonsymmetric)
    cluster_only = {"--inner-sweeps": inner_sweeps != DEFAULTS.inner_sweeps,
                    "--blocks": blocks is not None,
                    "--checkpoint": checkpoint is not None}  # fmt: skip
    if target is None and any(cluster_only.values()):
        given = ", ".join(flag for flag, used in cluster_only.items() if used)
        raise InputError(f"{given}: only for a solve on a running cluster")
    with Progress() as progress:
        if target is not None:
            result = target.solve_system(system, options, callback=progress, checkpoint=checkpoint)
        else:
            err.print(
                "no cluster running: solving on the local backend"
                if not local
                else "solving on the local backend (--local)"
            )
            assert isinstance(system, io.System)  # only a cluster solve is given a SystemFile
            result = api.solve_local(system, options, callback=progress)

    _answer(result, system.source, output, plot, json_out)


def _answer(
    result: SolveResult, source: str, output: Path | None, plot: Path | None, json_out: bool
) -> None:
    """The files asked for, the answer on stdout, and the exit code that says how it ended."""
    if result.reason == "interrupted":
        err.print("sorctl: interrupted: no solution file written")
        raise typer.Exit(EXIT_INTERRUPTED)
    note = result.extra.get("omega_note")
    if note:
        err.print(f"note: {note}", markup=False)
    report = result.to_report()
    report["source"] = source
    if output is not None:
        io.save_solution(output, result.x, result.residuals, report)
        err.print(f"wrote {output}", markup=False)
    if plot is not None:
        _write_plot(plot, result)
        err.print(f"wrote {plot}", markup=False)
    if json_out:
        note_host_peak(report)  # this process's peak, up to the report
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        Console(width=None if sys.stdout.isatty() else 120).print(_summary(result, source))
    raise typer.Exit(EXIT_OK if result.converged else EXIT_NOT_CONVERGED)


def register(app: typer.Typer) -> None:
    """Add `sorctl solve` to the sorctl app."""
    app.command("solve")(solve)
