"""Where an unfinished training run keeps its state, so that the same command run again continues it.

The state lives in a hidden folder beside the output, ``.<out name>.train-state``: ``settings.json`` (what the run
is: its stage's settings and the checksums of its inputs) and one checkpoint per training phase (``<phase>.pt``,
written by :func:`mobclf.train.loop.fit` at every epoch end, and every ``--save-every`` steps if asked). A rerun with
the same settings resumes (a setting added to the stage since the state was saved counts as the same when it is at
its default); one with other settings is refused with the fix (repeat the options, or ``--restart``); the folder is
removed once the artifact is written. Under torchrun rank 0 writes it and every rank reads it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobclf.artifacts import atomic_file
from mobclf.errors import UserError
from mobclf.protocol import as_json
from mobclf.train import distributed

# settings that say how to run, not what is trained: changing them keeps a saved state valid
NOT_THE_RUN = {"restart", "save_every", "device"}


@dataclass(frozen=True)
class TrainingState:
    dir: Path
    resumed: bool

    def checkpoint(self, phase: str) -> Path:
        return self.dir / f"{phase}.pt"

    def finish(self) -> None:
        """Remove the state (after the artifact is written)."""
        if distributed.is_main():
            shutil.rmtree(self.dir, ignore_errors=True)


def run_settings(config: Any, **inputs: Any) -> dict:
    """A stage's settings as ``settings.json`` keeps them: every field of ``config`` by its dotted name (``fit.lr``),
    the ones in ``NOT_THE_RUN`` left out, then each input (a checksum or a path) as ``input NAME``."""
    flat = {}

    def walk(values: dict, prefix: str) -> None:
        for key, value in values.items():
            if key in NOT_THE_RUN:
                continue
            if isinstance(value, dict) and key != "losses":
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value

    walk(as_json(config), "")
    return {**flat, **{f"input {name}": str(value) if isinstance(value, Path) else value
                       for name, value in inputs.items()}}


def open_state(out: Path, config: Any, restart: bool, **inputs: Any) -> TrainingState:
    """The state of the run of ``config`` on ``inputs`` writing ``out``: resumed when a saved one has the same
    settings, fresh otherwise (``restart`` discards a saved one first)."""
    settings, defaults = run_settings(config, **inputs), run_settings(type(config)())
    state = Path(out).parent / f".{Path(out).name}.train-state"
    resumed = False
    if distributed.is_main():
        if restart:
            shutil.rmtree(state, ignore_errors=True)
        resumed = _saved_settings(state, settings, defaults)
        if not resumed:
            state.mkdir(parents=True)
            with atomic_file(state / "settings.json") as file:
                file.write(json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
    return TrainingState(state, distributed.same_on_every_rank(resumed))


def _saved_settings(state: Path, settings: dict, defaults: dict) -> bool:
    """Whether ``state`` holds an unfinished run with ``settings``: True to resume it, False if there is none
    (a setting the saved run did not have is the same if it is at its value in ``defaults``)."""
    saved_file = state / "settings.json"
    if not saved_file.is_file():
        shutil.rmtree(state, ignore_errors=True)  # no settings: the first run stopped before it saved anything
        return False
    try:
        saved = json.loads(saved_file.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError("is not the settings of a training run (it was changed by hand?); pass --restart to discard "
                        "the saved state and start over", path=saved_file) from None
    differing = [key for key in {**saved, **settings} if saved.get(key, defaults.get(key)) != settings.get(key)]
    if differing:
        raise UserError(f"holds an unfinished training run with other settings ({', '.join(differing)}); repeat its "
                        "options to resume it, or pass --restart to discard it and start over", path=state)
    return True
