"""Errors raised by the solver package."""


class InputError(ValueError):
    """A bad system file or argument; the message is one line naming the file and the problem."""
