"""User-facing errors: one readable line, no traceback."""

from __future__ import annotations

import errno
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


OS_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space or choose another --out",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another --out",
    errno.EFBIG: "file too large for this file system (or the file-size limit); choose another --out",
    errno.EROFS: "read-only file system; choose another --out",
    errno.EACCES: "permission denied; choose a place you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a place you can write to, or fix its permissions",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EISDIR: "is a folder, not a file; give a file",
    errno.ENOENT: "no such file or folder; check the path",
    errno.EEXIST: "a file is in the way of a folder mobclf needs to create; move it or choose another path",
}


def os_advice(err: OSError) -> str:
    """What to do about an operating-system error (a full disk, a read-only place, a missing folder), in words."""
    return OS_ADVICE.get(err.errno, f"{err.strerror or err}; check the path and try again")
