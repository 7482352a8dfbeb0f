"""Both drivers called the way the tests write them: keyword options, which become the one
SolveOptions each driver takes."""

from __future__ import annotations

from sorctl.distributed import driver
from sorctl.options import SolveOptions
from sorctl.solver import local


def local_solve(A, b, *, x0=None, callback=None, **options):
    return local.solve(A, b, SolveOptions(**options), x0=x0, callback=callback)


def cluster_solve(A, b, executor, *, x0=None, callback=None, checkpoint=None,
                  on_event=None, parts=None, poll_s=1.0,
                  backend="cluster", keep="", **options):  # fmt: skip
    return driver.solve(
        A, b, executor, SolveOptions(**options), x0=x0, callback=callback, checkpoint=checkpoint,
        on_event=on_event, parts=parts, poll_s=poll_s,
        backend=backend, keep=keep,
    )  # fmt: skip
