"""``mobclf run RECIPE.yaml``: a whole pipeline declared as data, run step by step, resumable.

A recipe names an artifact root (``work``) and an ordered list of steps. Each step is one mobclf command: its
``options`` are the command's own long options without the dashes, its ``inputs`` name the earlier steps whose
output it reads, and it writes ``out`` (relative to ``work``; default: the step id). So a recipe says exactly what
the CLI can say, and every step prints the command that does the same by hand.

    name: demo
    work: ${MOBCLF_WORK:-../mobclf-demo}        # relative to this file; ${VAR} / ${VAR:-default} from the environment
    steps:
      - {id: corpus, kind: demo-corpus, options: {items: 3000}}
      - {id: dataset, kind: data, inputs: {input: corpus}}
      - id: teacher
        kind: teacher
        inputs: {data: dataset}                 # --data <work>/dataset
        options: {layers: 2, hidden: 128, heads: 4, max-length: 40, lr: 5.0e-4}
      - id: student
        kind: distill
        inputs: {teacher: teacher, data: dataset}
        options: {student: textcnn, loss: {soft_kd: 1, hard_bce: 1}, kernel-sizes: [2, 3, 4]}

Option values: a scalar is ``--name value``; ``true``/``false`` switch a flag (``whole-word: false`` is
``--no-whole-word``); a list repeats a repeatable option, fills a multi-value one (``split: [0.8, 0.1, 0.1]``) or
is joined by commas; a mapping repeats ``--name key=value`` (``loss``). Paths in options are relative to the recipe
file. An input may name a path inside a step's output: ``tokenizer-dir: teacher/tokenizer``.

A step is skipped ("✓ id (up to date)") when its output verifies and ``<work>/.recipe-state.json`` records that
this output was made by the same command from inputs with the same checksums; otherwise it runs, replacing the
output it made before, and so do the steps after it whose inputs changed. Stages write atomically, so an
interrupted run leaves every finished step complete and the next run starts at the interrupted one (pre-training
resumes from its last saved state).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml

from mobclf.artifacts import MANIFEST, load_artifact, sha256_file
from mobclf.cli import main
from mobclf.console import console
from mobclf.errors import UserError

STATE_FILE = ".recipe-state.json"
RESERVED = {"out": "give the step's `out` instead", "force": "use `mobclf run --force`",
            "restart": "`mobclf run` restarts pre-training when the step changed and resumes it otherwise"}


@click.command("demo-corpus")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="JSONL file to write.")
@click.option("--items", default=3000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
def demo_corpus_command(out: Path, items: int, seed: int, force: bool) -> None:
    """Generate the demo corpus (``mobclf.data.demo_corpus``) as a JSONL file."""
    from mobclf.data.demo_corpus import generate_demo_corpus

    if out.exists() and not force:
        raise UserError("already exists; pass --force to replace it or choose another --out", path=out)
    generate_demo_corpus(out, n_items=items, seed=seed)


@dataclass(frozen=True)
class Kind:
    """A step kind: the command that runs it and the kind of artifact it writes (None: a plain file)."""

    command: tuple[str, ...]
    artifact: str | None


KINDS = {
    "demo-corpus": Kind(("demo-corpus",), None),
    "data": Kind(("data", "prepare"), "dataset"),
    "pretrain": Kind(("pretrain",), "pretrained"),
    "teacher": Kind(("train-teacher",), "teacher"),
    "distill": Kind(("distill",), "student"),
    "prune": Kind(("prune",), "pruned"),
    "quantize": Kind(("quantize",), "quantized"),
    "export": Kind(("export",), "export"),
    "bench": Kind(("bench",), "report"),
}


@dataclass(frozen=True)
class Step:
    """One validated step: ``args`` is its command line (paths resolved), ``needs`` the ids of the steps it reads."""

    id: str
    kind: str
    out: Path
    args: tuple[str, ...]
    needs: tuple[str, ...]
    inputs: tuple[Path, ...]  # every path it reads (fingerprinted)


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    work: Path
    steps: list[Step] = field(default_factory=list)


def _command(kind: str) -> click.Command | None:
    if kind == "demo-corpus":
        return demo_corpus_command
    command: click.Command | None = main
    for name in KINDS[kind].command:
        command = command.commands.get(name) if isinstance(command, click.Group) else None
    return command


def _line_numbers(text: str) -> dict[tuple, int]:
    """The line of every key and list item of a YAML document, by its path of keys and indices."""
    lines: dict[tuple, int] = {}

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[path + (key.value,)] = key.start_mark.line + 1
                walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[path + (index,)] = item.start_mark.line + 1
                walk(item, path + (index,))

    walk(yaml.compose(text, Loader=yaml.SafeLoader), ())
    return lines


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Loader:
    """Reads and validates one recipe file; every problem is a one-line UserError naming the file and line."""

    def __init__(self, path: Path, work: Path | None):
        self.path = Path(path)
        try:
            text = self.path.read_text(encoding="utf-8")
            self.data = yaml.safe_load(text)
            self.lines = _line_numbers(text) if isinstance(self.data, dict) else {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            mark = getattr(err, "problem_mark", None)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UserError(f"not a valid YAML recipe ({problem})", path=self.path,
                            line=mark.line + 1 if mark else None) from None
        self.work_override = work

    def error(self, where: tuple, message: str) -> UserError:
        while where and where not in self.lines:
            where = where[:-1]
        return UserError(message, path=self.path, line=self.lines.get(where))

    def substitute(self, value: Any, where: tuple) -> Any:
        """``${VAR}`` and ``${VAR:-default}`` in every string, from the environment."""
        if isinstance(value, dict):
            return {key: self.substitute(item, where + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.substitute(item, where + (index,)) for index, item in enumerate(value)]
        if not isinstance(value, str):
            return value

        def replace(match: re.Match) -> str:
            name, default = match.groups()
            if name in os.environ:
                return os.environ[name]
            if default is None:
                raise self.error(where, f"${{{name}}} is not set; set it or write ${{{name}:-default}}")
            return default

        return _VARIABLE.sub(replace, value)

    def path_from_recipe(self, value: str) -> Path:
        return (self.path.parent / Path(value).expanduser()).resolve()

    def load(self) -> Recipe:
        data = self.data
        if not isinstance(data, dict):
            raise self.error((), "a recipe is a mapping with `name`, `work` and `steps`")
        data = self.substitute(data, ())
        self.check_keys(data, (), {"name", "description", "work", "steps"}, "recipe")
        for key in ("name", "steps") + (("work",) if self.work_override is None else ()):
            if key not in data:
                raise self.error((), f"missing `{key}`")
        if not isinstance(data["name"], str):
            raise self.error(("name",), "`name` must be a string")
        if self.work_override is not None:
            work = Path(self.work_override).expanduser().resolve()
        elif isinstance(data["work"], str) and data["work"]:
            work = self.path_from_recipe(data["work"])
        else:
            raise self.error(("work",), "`work` must be a path (the artifact root)")
        if not isinstance(data["steps"], list) or not data["steps"]:
            raise self.error(("steps",), "`steps` must be a non-empty list")
        recipe = Recipe(name=data["name"], path=self.path, work=work)
        outs: dict[Path, str] = {}
        for index, raw in enumerate(data["steps"]):
            step = self.step(raw, ("steps", index), recipe)
            if step.out in outs:
                raise self.error(("steps", index), f"step {step.id!r} writes {step.out}, as step {outs[step.out]!r} "
                                                   "does; give it another `out`")
            outs[step.out] = step.id
            recipe.steps.append(step)
        return recipe

    def check_keys(self, mapping: dict, where: tuple, known: set[str], what: str) -> None:
        for key in mapping:
            if key not in known:
                raise self.error(where + (key,), f"unknown key {key!r} in {what}{_did_you_mean(str(key), known)}; "
                                                 f"expected {', '.join(sorted(known))}")

    def step(self, raw: Any, where: tuple, recipe: Recipe) -> Step:
        if not isinstance(raw, dict):
            raise self.error(where, "a step is a mapping with `id`, `kind` and `options`")
        self.check_keys(raw, where, {"id", "kind", "description", "out", "inputs", "options"}, "a step")
        step_id = raw.get("id")
        if not isinstance(step_id, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", step_id):
            raise self.error(where + ("id",), "every step needs an `id` (letters, digits, '-', '_', '.')")
        earlier = {step.id: step for step in recipe.steps}
        if step_id in earlier:
            raise self.error(where + ("id",), f"two steps are called {step_id!r}")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise self.error(where + ("kind",), f"step {step_id!r}: unknown kind {kind!r}"
                                                f"{_did_you_mean(str(kind), KINDS)}; expected one of "
                                                f"{', '.join(KINDS)}")
        command = _command(kind)
        if command is None:
            raise self.error(where + ("kind",), f"step {step_id!r}: this mobclf has no `mobclf "
                                                f"{' '.join(KINDS[kind].command)}` command for kind {kind!r}")
        name = f"mobclf {' '.join(KINDS[kind].command)}"
        out = raw.get("out", step_id + (".jsonl" if KINDS[kind].artifact is None else ""))
        if not isinstance(out, str) or not out:
            raise self.error(where + ("out",), f"step {step_id!r}: `out` must be a path (relative to `work`)")
        out_path = (recipe.work / Path(out).expanduser()).resolve()

        params = _params_by_key(command)
        options, inputs = raw.get("options") or {}, raw.get("inputs") or {}
        for key, value in (("options", options), ("inputs", inputs)):
            if not isinstance(value, dict):
                raise self.error(where + (key,), f"step {step_id!r}: `{key}` must be a mapping")
        given: dict[str, str] = {}  # click parameter name → the key that set it
        tokens: list[tuple[click.Parameter, list[str]]] = []
        needs: list[str] = []
        read: list[Path] = []
        for section, mapping in (("inputs", inputs), ("options", options)):
            for key, value in mapping.items():
                at = where + (section, key)
                flag = str(key).replace("_", "-")
                if flag in RESERVED:
                    raise self.error(at, f"step {step_id!r}: {flag!r} is not a recipe option ({RESERVED[flag]})")
                if flag not in params:
                    raise self.error(at, f"step {step_id!r}: unknown option {key!r} for {name}"
                                         f"{_did_you_mean(flag, params)} (see `{name} --help`)")
                param, secondary = params[flag]
                if param.name in given:
                    raise self.error(at, f"step {step_id!r}: {key!r} sets what {given[param.name]!r} already sets")
                given[param.name] = str(key)
                is_path = isinstance(param.type, click.Path)
                if section == "inputs" and not is_path:
                    raise self.error(at, f"step {step_id!r}: {key!r} is not a path; put it under `options`")
                if is_path:
                    paths = self.paths(value, param, section == "inputs", earlier, at, f"step {step_id!r}: {key}")
                    needs.extend(source for _, source in paths if source)
                    read.extend(path for path, _ in paths)
                    value = [str(path) for path, _ in paths]
                try:
                    tokens.append((param, _tokens(param, secondary, value, check=not is_path)))
                except click.BadParameter as err:
                    raise self.error(at, f"step {step_id!r}: {key}: {err.message}") from None
        missing = [param for param in command.params
                   if param.required and param.name != "out" and param.name not in given]
        if missing:
            keys = ", ".join(_key(param) for param in missing)
            raise self.error(where, f"step {step_id!r}: {name} needs {keys} (under `inputs` as an earlier step's id, "
                                    "or under `options`)")
        arguments = [token for param, group in tokens if isinstance(param, click.Argument) for token in group]
        args = (*arguments, *(token for param, group in tokens if not isinstance(param, click.Argument)
                              for token in group), "--out", str(out_path))
        return Step(id=step_id, kind=kind, out=out_path, args=args, needs=tuple(dict.fromkeys(needs)),
                    inputs=tuple(read))

    def paths(self, value: Any, param: click.Parameter, by_id: bool, earlier: dict[str, Step], at: tuple,
              what: str) -> list[tuple[Path, str | None]]:
        """The paths a path option names (relative to the recipe file), or an input (an earlier step's id, or
        ``id/path/inside``), each with the step it comes from."""
        paths = []
        for item in value if isinstance(value, list) and _multiple(param) else [value]:
            if not isinstance(item, str) or not item:
                raise self.error(at, f"{what}: expected {'an earlier step id' if by_id else 'a path'}, got {item!r}")
            if not by_id:
                paths.append((self.path_from_recipe(item), None))
                continue
            source, _, inside = item.partition("/")
            if source not in earlier:
                raise self.error(at, f"{what}: {item!r} is not an earlier step's id (earlier steps: "
                                     f"{', '.join(earlier) or 'none'})")
            paths.append((earlier[source].out / inside if inside else earlier[source].out, source))
        return paths


def _did_you_mean(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _key(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return (param.metavar or param.name).strip("[]").lower()
    return max(param.opts, key=len).lstrip("-")


def _params_by_key(command: click.Command) -> dict[str, tuple[click.Parameter, bool]]:
    """Recipe keys of a command's parameters: its long option names without dashes (True: a secondary off-switch
    such as ``no-whole-word``), and arguments by their metavar (``input``)."""
    keys: dict[str, tuple[click.Parameter, bool]] = {}
    for param in command.params:
        if isinstance(param, click.Argument):
            keys[_key(param)] = (param, False)
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:]] = (param, False)
        for opt in getattr(param, "secondary_opts", []):
            keys[opt[2:]] = (param, True)
    return keys


def _multiple(param: click.Parameter) -> bool:
    return bool(getattr(param, "multiple", False))


def _tokens(param: click.Parameter, secondary: bool, value: Any, check: bool) -> list[str]:
    """The command-line tokens of one recipe option (``check``: convert them with the option's own type and
    callback, so a bad value is refused when the recipe loads, not hours into a run)."""
    if value is None:
        return []
    if isinstance(param, click.Option) and param.is_flag:
        if not isinstance(value, bool):
            raise click.BadParameter("expected true or false")
        on = value != secondary
        if param.secondary_opts:
            return [param.opts[0] if on else param.secondary_opts[0]]
        return [param.opts[0]] if on else []
    if isinstance(value, dict):
        if not _multiple(param):
            raise click.BadParameter("expected one value, not a mapping")
        value = [f"{key}={item}" for key, item in value.items()]
    if param.nargs > 1:
        if not isinstance(value, list) or len(value) != param.nargs:
            raise click.BadParameter(f"expected a list of {param.nargs} values")
        groups = [value]
    elif isinstance(value, list):
        groups = [[item] for item in value] if _multiple(param) else [[",".join(map(str, value))]]
    else:
        groups = [[value]]
    if any(isinstance(item, (dict, list)) for group in groups for item in group):
        raise click.BadParameter("expected plain values")
    groups = [[_text(item) for item in group] for group in groups]
    if check:
        raw = [tuple(group) if param.nargs > 1 else group[0] for group in groups]
        param.process_value(click.Context(click.Command("recipe")), tuple(raw) if _multiple(param) else raw[0])
    if isinstance(param, click.Argument):
        return [token for group in groups for token in group]
    return [token for group in groups for token in (param.opts[0], *group)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# ---- running ---------------------------------------------------------------------------------------------------


def _digest(path: Path) -> str | None:
    """What a step read at ``path``: an artifact's identity (its manifest's hash), a file's or a directory's
    content hash; None if it is not there."""
    if (path / MANIFEST).is_file():
        return sha256_file(path / MANIFEST)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = "\n".join(f"{p.relative_to(path).as_posix()} {sha256_file(p)}" for p in files)
        return hashlib.sha256(listing.encode()).hexdigest()
    return None


def _fingerprint(step: Step) -> str:
    """The step's command line and the checksums of everything it reads."""
    record = {"kind": step.kind, "args": list(step.args), "inputs": {str(p): _digest(p) for p in step.inputs}}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _output(step: Step) -> tuple[str, float] | None:
    """The step's verified output: its hash and when it was made; None if missing, unverified or another kind."""
    kind = KINDS[step.kind].artifact
    if kind is None:
        return (sha256_file(step.out), step.out.stat().st_mtime) if step.out.is_file() else None
    try:
        artifact = load_artifact(step.out, kind=kind)
    except UserError:
        return None
    return artifact.sha256, datetime.fromisoformat(artifact.manifest["created"]).timestamp()


class _State:
    """``<work>/.recipe-state.json``: for each output path, the fingerprint and hash of what a step wrote there
    (``done``), and the steps started but not finished (``running``), keyed the same way."""

    def __init__(self, work: Path):
        self.file = work / STATE_FILE
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            console.print(f"{self.file}: unreadable; every step's output is checked again", markup=False)
            data = {}
        self.done: dict[str, dict] = data.get("done", {})
        self.running: dict[str, dict] = data.get("running", {})

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(self.file.name + ".tmp")
        tmp.write_text(json.dumps({"done": self.done, "running": self.running}, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.file)

    def up_to_date(self, step: Step, fingerprint: str) -> bool:
        key = str(step.out)
        output = _output(step)
        if output is None:
            return False
        done, running = self.done.get(key), self.running.get(key)
        if done and done["fingerprint"] == fingerprint and done["sha256"] == output[0]:
            return True
        # interrupted after the stage wrote its output but before it was recorded: the output is newer than the start
        if running and running["fingerprint"] == fingerprint and output[1] >= running["started"]:
            self.finish(step, fingerprint, output[0])
            return True
        return False

    def start(self, step: Step, fingerprint: str) -> None:
        self.running[str(step.out)] = {"step": step.id, "fingerprint": fingerprint, "started": int(time.time())}
        self.save()

    def finish(self, step: Step, fingerprint: str, sha256: str) -> None:
        self.running.pop(str(step.out), None)
        self.done[str(step.out)] = {"step": step.id, "fingerprint": fingerprint, "sha256": sha256}
        self.save()


def _selected(recipe: Recipe, only) -> set[str]:
    """The steps to consider: all, or the ``only`` ones and every step they need."""
    ids = {step.id: step for step in recipe.steps}
    if not only:
        return set(ids)
    unknown = [step_id for step_id in only if step_id not in ids]
    if unknown:
        raise UserError(f"no step {unknown[0]!r} in this recipe; its steps are {', '.join(ids)}", path=recipe.path)
    chosen, todo = set(), list(only)
    while todo:
        step_id = todo.pop()
        if step_id not in chosen:
            chosen.add(step_id)
            todo.extend(ids[step_id].needs)
    return chosen


def _say(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def _shown(step: Step) -> str:
    """The command line a step runs (demo-corpus is a recipe step, not a mobclf command)."""
    prefix = ["mobclf"] if step.kind != "demo-corpus" else []
    return shlex.join([*prefix, *KINDS[step.kind].command, *step.args])


def run_recipe(path: str | Path, *, work: str | Path | None = None, only=None, force: bool = False,
               dry_run: bool = False) -> dict[str, str]:
    """Run the recipe at ``path``: every step (or the ``only`` ones and the steps they need) whose output is not up
    to date, in order. ``work`` replaces the recipe's artifact root; ``force`` runs the steps (the ``only`` ones)
    even when up to date; ``dry_run`` validates and prints the plan without running anything.

    Returns each considered step's status: "up to date", "ran", or with ``dry_run`` "would run".
    """
    recipe = _Loader(Path(path), Path(work) if work is not None else None).load()
    only = [only] if isinstance(only, str) else list(only or [])
    chosen = _selected(recipe, only)
    forced = set(only or chosen) if force else set()
    state = _State(recipe.work)
    statuses: dict[str, str] = {}
    _say(f"recipe {recipe.name} ({recipe.path}) → {recipe.work}")
    for step in recipe.steps:
        if step.id not in chosen:
            continue
        stale_input = any(statuses.get(need) == "would run" for need in step.needs)
        fingerprint = _fingerprint(step)
        if step.id not in forced and not stale_input and state.up_to_date(step, fingerprint):
            statuses[step.id] = "up to date"
            _say(f"✓ {step.id} (up to date)")
            continue
        if dry_run:
            statuses[step.id] = "would run"
            _say(f"• {step.id} would run: {_shown(step)}")
            continue
        _say(f"▶ {step.id}: {_shown(step)}")
        started = time.perf_counter()
        _run_step(recipe, step, state, fingerprint, force=step.id in forced)
        statuses[step.id] = "ran"
        _say(f"✓ {step.id} (done in {time.perf_counter() - started:.0f} s)")
    counts = {status: list(statuses.values()).count(status) for status in dict.fromkeys(statuses.values())}
    _say(f"recipe {recipe.name}: " + ", ".join(f"{count} {status}" for status, count in counts.items())
         + f"; artifacts in {recipe.work}")
    return statuses


def _run_step(recipe: Recipe, step: Step, state: _State, fingerprint: str, force: bool) -> None:
    """Invoke the step's command. An earlier output of this step (or, with ``force``, any artifact or file of ours
    there) is removed first; anything else at ``out`` is left for the command to refuse."""
    key = str(step.out)
    resume = key in state.running and state.running[key]["fingerprint"] == fingerprint
    ours = key in state.done or force
    if ours and step.out.is_dir() and (step.out / MANIFEST).is_file():
        shutil.rmtree(step.out)
    elif ours and step.out.is_file() and KINDS[step.kind].artifact is None:
        step.out.unlink()
    args = list(step.args)
    if step.kind == "pretrain" and not resume:
        args.append("--restart")  # pre-training resumes its own saved state only for the same, interrupted step
    state.start(step, fingerprint)
    command = _command(step.kind)
    prog = " ".join(["mobclf", *KINDS[step.kind].command])
    argv = sys.argv
    sys.argv = ["mobclf", *KINDS[step.kind].command, *args]  # the artifact's lineage records the equivalent command
    try:
        command.main(args, prog_name=prog, standalone_mode=False)
    except click.ClickException as err:
        raise UserError(f"step {step.id!r} ({prog}) failed: {err.format_message()}", path=recipe.path) from err
    finally:
        sys.argv = argv
    output = _output(step)
    if output is None:
        raise UserError(f"step {step.id!r} ({prog}) finished without a verified {KINDS[step.kind].artifact or 'file'}"
                        f" at {step.out}", path=recipe.path)
    state.finish(step, fingerprint, output[0])
