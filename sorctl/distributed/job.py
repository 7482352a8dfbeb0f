"""What the host hands the client container for one cluster solve: a JSON document with the
solve's options and where the scheduler is, next to the system file (all under SOLVE_DIR), or
with the grid system the nodes make themselves."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sorctl.errors import InputError
from sorctl.names import CERT_PATH, CLIENT_PORT, KEY_PATH, SECRET_PATH, SOLVE_DIR
from sorctl.options import DEFAULTS, SolveOptions

JOB_FILE = f"{SOLVE_DIR}/job.json"


@dataclass(frozen=True)
class SolveJob:
    scheduler: str  # dispyscheduler's address, as the client container reaches it
    options: SolveOptions = DEFAULTS
    port: int = CLIENT_PORT
    nodes: int = 1  # nodes to wait for before starting
    cpus: int = 0  # their CPUs in all, as the host expects them (0: not known)
    backend: str = "cluster"  # the report's `backend`: cluster:<name>
    tls: bool = False  # use the cluster's certificate and key (CERT_PATH, KEY_PATH)
    checkpoint: bool = False  # emit checkpoints every options.checkpoint_every_s
    host: str | None = None  # own address; None: the one that faces the scheduler
    system_key: str = ""  # the user's file (path, size, mtime): the nodes keep its blocks
    grid: dict[str, Any] | None = None  # a grid system the nodes make (generated.Grid), no file
    solve_dir: str = SOLVE_DIR  # system.npz in, result.npz and checkpoints out
    secret_file: str = SECRET_PATH
    cert_file: str = CERT_PATH
    key_file: str = KEY_PATH

    @property
    def system_path(self) -> Path:
        return Path(self.solve_dir) / "system.npz"

    @property
    def system_ready_path(self) -> Path:
        """Put beside system.npz once it is whole (the client starts before it arrives)."""
        return Path(self.solve_dir) / "system.ready"

    @property
    def result_path(self) -> Path:
        return Path(self.solve_dir) / "result.npz"

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.solve_dir) / "checkpoint.npz"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SolveJob:
        try:
            data: dict[str, Any] = json.loads(text)
            options = SolveOptions.from_dict(data.pop("options", {}))
            return cls(options=options, **data)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"bad solve job document: {exc}") from None
