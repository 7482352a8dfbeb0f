"""Errors the CLI turns into one line on stderr and an exit code (see README: exit codes)."""

from __future__ import annotations

# Exit codes: each means one thing (README lists them).
EXIT_OK = 0
EXIT_FAILURE = 1  # anything else: engine errors, cluster failures
EXIT_BAD_INPUT = 2  # bad file, bad flag value, usage error (click uses 2 too)
EXIT_NOT_CONVERGED = 3  # the solve ran but did not converge, or diverged
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A failure to report as one line, without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
