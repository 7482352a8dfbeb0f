"""How `sorctl images build` shows a build: one live line per role (its step and elapsed time)
on stderr while it runs, a summary table on stdout when it is done, and a failing step's last
output lines above the error."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sorctl.api import Built, Step

INSTRUCTION_WIDTH = 48


def step_text(step: Step) -> str:
    """`step 12/31  RUN python3 -m venv ...`: one line, however long the instruction."""
    flat = " ".join(step.instruction.split())
    if len(flat) > INSTRUCTION_WIDTH:
        flat = flat[: INSTRUCTION_WIDTH - 3] + "..."
    return f"step {step.number}/{step.total}  {flat}"


def summary_table(results: list[Built]) -> Table:
    """Role, image, built or unchanged, size and seconds, one row per role."""
    table = Table("role", "image", "result", "size MB", "seconds")
    for r in results:
        size = f"{r.size_mb:.0f}" if r.size_mb is not None else "-"
        table.add_row(r.role, r.ref, r.action, size, f"{r.seconds:.1f}")
    return table


class BuildProgress:
    """A BuildWatch drawn with rich: a line per role, updated as its steps go by. On a
    terminal it is live; elsewhere (a log, a pipe) the final lines are printed once."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.fields[role]:<10}"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.steps: dict[str, list[Step]] = {}
        self.log_path: Path | None = None

    def __enter__(self) -> BuildProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def message(self, line: str) -> None:
        self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def log_opened(self, path: Path) -> None:
        self.log_path = path

    def role_started(self, role: str, ref: str) -> None:
        self.tasks[role] = self.progress.add_task("starting", role=role, total=None)

    def role_step(self, role: str, step: Step) -> None:
        self.steps.setdefault(role, []).append(step)
        self.progress.update(self.tasks[role], description=step_text(step))

    def role_finished(self, result: Built) -> None:
        task = self.tasks.get(result.role)
        if task is None:  # unchanged: never started
            task = self.tasks[result.role] = self.progress.add_task("", role=result.role)
        what = result.action
        steps = self.steps.get(result.role)
        if steps:  # steps are marked cached after they start: count them now
            what += f", {len(steps)} steps ({sum(s.cached for s in steps)} from cache)"
        self.progress.update(task, description=what, total=1, completed=1)
        self.progress.stop_task(task)


def show_failure(console: Console, step: str, tail: list[str]) -> None:
    """The failing step and the last lines it printed (the one-line error follows)."""
    console.print(f"failed at {step}; its last lines:", markup=False, highlight=False,
                  soft_wrap=True)  # fmt: skip
    for line in tail or ["(it printed nothing)"]:
        console.print(f"  | {line}", markup=False, highlight=False, soft_wrap=True)
