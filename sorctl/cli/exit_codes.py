"""Exit codes: each means one thing (docs/solving.md lists them); only the CLI maps to them."""

from __future__ import annotations

from sorctl.errors import InputError, SorctlError

EXIT_OK = 0
EXIT_FAILURE = 1  # anything else: engine errors, cluster failures, a missing optional package
EXIT_BAD_INPUT = 2  # bad file, bad flag value, usage error (click uses 2 too)
EXIT_NOT_CONVERGED = 3  # the solve ran but did not converge, or diverged
EXIT_INTERRUPTED = 130


def exit_code(exc: SorctlError) -> int:
    return EXIT_BAD_INPUT if isinstance(exc, InputError) else EXIT_FAILURE
