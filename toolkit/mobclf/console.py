"""One rich console (stderr) and one progress style for every stage: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress() -> Progress | PlainProgress:
    """A rich bar while stderr is a terminal (or a notebook); when it is a file or a pipe (a log, CI), a bar would be
    printed once, cut to the file's width: ``PlainProgress`` logs plain lines instead."""
    if not (console.is_terminal or console.is_jupyter):
        return PlainProgress()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console)


class PlainProgress:
    """The part of ``rich.progress.Progress`` the stages use (``add_task``, ``update``, ``advance``, ``with``), as log
    lines: ``description: done/total (percent) status``, one each time another tenth of a task is done once the task
    has run ``after`` seconds. Quick tasks (a validation pass) stay silent; long ones say how far they are."""

    def __init__(self, after: float = 2.0):
        self.after = after
        self.tasks: dict[int, dict] = {}

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        task = len(self.tasks)
        self.tasks[task] = {"description": description, "total": total, "completed": completed,
                            "fields": {"status": "", **fields}, "start": time.monotonic(),
                            "tenth": self._tenth(completed, total)}
        return task

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(self, task: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **fields) -> None:
        state = self.tasks[task]
        if total is not None:
            state["total"] = total
        if completed is not None:
            state["completed"] = completed
        if advance is not None:
            state["completed"] += advance
        if description is not None:
            state["description"] = description
        state["fields"].update(fields)
        tenth = self._tenth(state["completed"], state["total"])
        if tenth > state["tenth"]:
            state["tenth"] = tenth
            if time.monotonic() - state["start"] >= self.after:
                self._log(state)

    @staticmethod
    def _tenth(completed: float, total: float | None) -> int:
        return int(10 * completed / total) if total else 0

    @staticmethod
    def _log(state: dict) -> None:
        done, total = state["completed"], state["total"]
        status = str(state["fields"].get("status") or "")
        frame, offset = sys._getframe(1), 2  # the log line names the stage's code, not this file
        while frame is not None and frame.f_code.co_filename == __file__:
            frame, offset = frame.f_back, offset + 1
        console.log(f"{state['description']}: {done:,.0f}/{total:,.0f} ({100 * done / total:.0f}%)"
                    + (f" {status}" if status else ""), markup=False, highlight=False, _stack_offset=offset)
