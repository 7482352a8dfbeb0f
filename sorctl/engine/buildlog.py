"""What an image build reports: the docker SDK's JSON stream read as steps, and the full log.

`StepParser` turns the legacy builder's stream (`client.api.build(decode=True)`) into steps
(`Step 12/31 : RUN ...`, their output lines, cached or not, the image each made) and knows the
image each named stage ended with, so a build can tag the stage caches it keeps and remove the
leftovers it does not. `BuildLog` writes every line to a file in the user's cache directory.
Both are pure: no Docker here, the callers feed them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

import platformdirs

TAIL_LINES = 20  # a failing step's last output lines kept for the error report
KEEP_LOGS = 10  # build logs kept in the cache directory (the oldest go first)

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_IMAGE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
_FROM = re.compile(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?\s*$", re.I)
_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOISE = (" ---> Running in ", "Removing intermediate container ", " ---> Using cache")


@dataclass
class Built:
    role: str
    ref: str
    action: str  # "built" or "unchanged"
    seconds: float
    size_mb: float | None = None


@dataclass
class Step:
    number: int
    total: int
    instruction: str
    stage: str | None  # the stage this step belongs to (`FROM ... AS <stage>`)
    cached: bool = False
    image: str | None = None  # the image the step left (short id)
    output: list[str] = field(default_factory=list)  # what the step printed (RUN output)


class BuildWatch(Protocol):
    """How a build reports progress to whoever shows it (the CLI draws it with rich)."""

    def log_opened(self, path: Path) -> None: ...

    def role_started(self, role: str, ref: str) -> None: ...

    def role_step(self, role: str, step: Step) -> None: ...

    def role_finished(self, result: Built) -> None: ...


class StepParser:
    """Reads one build's JSON stream, chunk by chunk (`feed`); `on_step` hears each new step."""

    def __init__(self, on_step: Callable[[Step], None] | None = None) -> None:
        self.on_step = on_step
        self.steps: list[Step] = []
        self.stages: dict[str, str] = {}  # stage name -> the image it ended with
        self.image: str | None = None  # the target's image, once built
        self.error: str | None = None
        self._stage: str | None = None
        self._last_image: str | None = None
        self._partial = ""

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def feed(self, chunk: dict) -> list[str]:
        """Take one decoded chunk; return the complete lines it finished (for the log)."""
        if "error" in chunk:
            self.error = str(chunk["error"]).strip()
            return [*self._flush(), f"ERROR: {self.error}"]
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            # sent as each stage ends (the target's included)
            self._end_stage(chunk["aux"]["ID"].removeprefix("sha256:")[:12])
            return []
        text = self._partial + str(chunk.get("stream", ""))
        *complete, self._partial = text.split("\n")
        lines = [_clean(line) for line in complete]
        for line in lines:
            self._line(line)
        return lines

    def finish(self) -> list[str]:
        """The stream ended: the last line if it had no newline."""
        return self._flush()

    def _flush(self) -> list[str]:
        if not self._partial:
            return []
        line, self._partial = _clean(self._partial), ""
        self._line(line)
        return [line]

    def _line(self, line: str) -> None:
        step = _STEP.match(line)
        if step:
            number, total, instruction = int(step[1]), int(step[2]), step[3].strip()
            stage = _FROM.match(instruction)
            if stage:
                self._end_stage(self._last_image)
                self._stage = stage[1]
            self.steps.append(Step(number, total, instruction, self._stage))
            if self.on_step is not None:
                self.on_step(self.steps[-1])
            return
        current = self.current
        if line.strip() == "---> Using cache" and current is not None:
            current.cached = True
            return
        image = _IMAGE.match(line)
        if image:
            self._last_image = image[1][:12]
            if current is not None:
                current.image = self._last_image
            return
        built = _BUILT.match(line)
        if built:
            self._end_stage(built[1][:12], final=True)
            return
        if line.startswith(_NOISE) or line.startswith("Successfully tagged "):
            return
        if current is not None and line.strip():
            current.output.append(line)

    def _end_stage(self, image: str | None, final: bool = False) -> None:
        if image is None:
            return
        if self._stage is not None:
            self.stages[self._stage] = image
        if final:
            self.image = image

    def failure(self) -> tuple[str, list[str]]:
        """(the failing step as `step n/m (instruction)`, its last output lines)."""
        step = self.current
        if step is None:
            return "before the first step", []
        return (f"step {step.number}/{step.total} ({_short(step.instruction)})",
                step.output[-TAIL_LINES:])  # fmt: skip


def _clean(line: str) -> str:
    """One display line: no colour codes, only what a carriage return left on it."""
    return _ANSI.sub("", line).rstrip("\r").split("\r")[-1]


def _short(instruction: str, width: int = 80) -> str:
    flat = " ".join(instruction.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def log_dir() -> Path:
    """Where build logs are kept: the user's cache (XDG), beside the wheel cache."""
    return Path(platformdirs.user_cache_dir("sorctl")) / "logs"


class BuildLog:
    """The full log of one `sorctl images build`: every message and every line Docker printed,
    each after the seconds since the start, each role's lines prefixed with the role. Opened
    in log_dir(); older logs beyond KEEP_LOGS are removed."""

    def __init__(self, version: str, folder: Path | None = None) -> None:
        folder = folder or log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = folder / f"build-{version}-{stamp}.log"
        n = 1
        while self.path.exists():
            n += 1
            self.path = folder / f"build-{version}-{stamp}-{n}.log"
        self._file: TextIO = self.path.open("w", encoding="utf-8")
        self._start = time.monotonic()
        logs = sorted(folder.glob("build-*.log"), key=lambda p: p.stat().st_mtime)
        for old in logs[:-KEEP_LOGS]:
            old.unlink(missing_ok=True)

    def write(self, line: str) -> None:
        """One line, after the seconds since the build started (where the time goes)."""
        self._file.write(f"{time.monotonic() - self._start:7.1f} {line}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
