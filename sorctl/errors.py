"""The exceptions sorctl raises. Each message is one line, the one the CLI prints as is;
exit codes are the CLI's business (sorctl.cli.exit_codes), not the library's."""


class SorctlError(Exception):
    """A failure with a one-line message (no traceback needed to understand it)."""


class InputError(SorctlError, ValueError):
    """A bad system file, argument or option; the message names the file or option."""


class ClusterError(SorctlError):
    """A cluster cannot be brought up, found or reached, or it failed during a solve."""


class EngineError(ClusterError):
    """No Docker engine answers, or the engine refused a request."""


class PortsTakenError(ClusterError):
    """Something on a host already binds the dispy ports a cluster there needs."""


class ImageError(SorctlError):
    """The sorctl images are missing, stale, or cannot be built."""


class BuildError(ImageError):
    """An image build failed at one step: which (`step n/m (instruction)`), the last lines it
    printed (for the CLI to show above the one-line message) and the full log's path."""

    def __init__(self, message: str, *, step: str, tail: list[str], log_path: str) -> None:
        super().__init__(message)
        self.step, self.tail, self.log_path = step, tail, log_path
