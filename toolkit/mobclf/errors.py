"""User-facing errors: one readable line, no traceback."""

from __future__ import annotations

from pathlib import Path

import click


class UserError(click.ClickException):
    """A mistake in the user's input or options; the CLI prints it as one line and exits with status 2.

    Name the file (and line) and say what to do: ``UserError("run --force to replace it", path=out)``.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
