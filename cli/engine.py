"""The one way the CLI reaches the Docker engine."""

from __future__ import annotations

from cli.errors import UserError


def connect():
    """A pinged Docker SDK client, or UserError (exit 1) naming why no engine answers."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no socket, no permission, engine down: all one message
        raise UserError(f"no Docker engine answers: {exc}") from None
    return client
