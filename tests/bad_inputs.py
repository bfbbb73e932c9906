"""The harness of the bad-input suite (``tests/test_bad_inputs_*.py``): a command that must be refused is run and
checked for what every refusal promises — exit status 2, one line that names the path (and line) and what to do,
no traceback, and not one byte of the user's files changed, moved or removed.

    case = Refusal(["data", "prepare", "news.tsv", "--out", "ds"], where="news.tsv", line=3, says="quote")
    case.check(tmp_path)   # runs in tmp_path; every file under tmp_path is protected
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

from mobclf.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """Every file, folder and link under ``root`` (relative path → content hash, 'dir' or the link target)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[key] = "link:" + os.readlink(path)
            elif path.is_dir():
                state[key] = "dir"
            else:
                state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def changes(before: dict[str, str], after: dict[str, str], allowed=()) -> list[str]:
    """What changed between two snapshots, ignoring hidden lock files and the ``allowed`` prefixes."""
    def kept(key: str) -> bool:
        return not key.split("/")[-1].endswith(".lock") and not any(key.startswith(prefix) for prefix in allowed)

    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key) and kept(key))


@dataclass
class Refusal:
    """A command that must fail as a user mistake: ``where`` (relative to the run folder) and ``line`` must be named
    in the one error line, ``says`` is a fragment of the advice. ``allowed`` lists paths the command may create
    (e.g. a lock file's folder); everything else under the run folder must stay byte-identical."""

    args: list
    where: str | None = None
    line: int | None = None
    says: str | None = None
    allowed: tuple[str, ...] = field(default_factory=tuple)

    def check(self, folder: Path, env: dict | None = None) -> str:
        before = snapshot(folder)
        previous = Path.cwd()
        os.chdir(folder)
        try:
            result = CliRunner().invoke(main, [str(arg) for arg in self.args], env=env)
        finally:
            os.chdir(previous)
        return self.judge(result.exit_code, result.stderr, repr(result.exception), before, snapshot(folder))

    def check_process(self, folder: Path, env: dict | None = None, timeout: float = 120,
                      max_file_bytes: int | None = None) -> str:
        """The same promise for a separate ``mobclf`` process (locks, signals, real stdin/stderr);
        ``max_file_bytes`` makes any larger write fail as on a full disk (RLIMIT_FSIZE: EFBIG)."""
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

        before = snapshot(folder)
        done = subprocess.run([str(Path(sys.executable).parent / "mobclf"), *map(str, self.args)], cwd=folder,
                              capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
                              preexec_fn=limit if max_file_bytes is not None else None)
        return self.judge(done.returncode, done.stderr, done.stdout, before, snapshot(folder))

    def judge(self, code: int, stderr: str, detail: str, before: dict, after: dict) -> str:
        assert "Traceback" not in stderr, stderr
        assert code == 2, f"exit {code}: {stderr}\n{detail}"
        errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, stderr
        error = errors[0]
        assert stderr.rstrip().endswith(error), f"the error is not the last line: {stderr}"
        if self.where is not None:
            where = self.where + (f":{self.line}" if self.line is not None else "")
            assert where in error, f"{where!r} not named in: {error}"
        if self.says is not None:
            assert self.says in error, f"{self.says!r} not in: {error}"
        assert not changes(before, after, self.allowed), f"user files changed: {changes(before, after, self.allowed)}"
        return error
