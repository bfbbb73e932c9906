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

The whole recipe is checked before anything runs, and every problem is one line naming the recipe file and line:
YAML that repeats a key, has a recursive alias or expands past ``MAX_NODES`` nodes (a "billion laughs"); unknown
kinds, keys and options; values the command would refuse, non-finite numbers (``.nan``, ``.inf``, ``1e400``) and
integers past ``MAX_INT``; missing input files; an ``out`` that is hidden, lies outside ``work``, or equals, lies
inside or holds another step's ``out``.

What a recipe makes, it knows by lineage: while a step runs, ``mobclf.artifacts.RECIPE_STEP`` is set, so the
artifact records ``lineage["recipe_step"] = {"recipe", "step", "fingerprint"}`` (the fingerprint: the step's
command line and the checksums of everything it reads). A step is skipped ("✓ id (up to date)") when its output
verifies and was made with the same fingerprint; a demo corpus (a plain file) when it is byte for byte the corpus
the step would generate. Otherwise the step runs, and so do the steps after it whose inputs changed.

Nothing the recipe did not make is replaced or removed, not even with ``--force``: an existing output is handed
to its stage (with ``--force``, which swaps the new one in atomically) only when the recipe owns it, i.e. its
lineage names this recipe's step, or its checksum is the one ``<work>/.recipe-state.json`` recorded when a step
wrote it. Anything else at a step's ``out`` (a hand-edited corpus, a folder of your own files, an artifact made by
hand) stops the run with one line. The state file only helps (ownership of outputs another recipe sharing the
``work`` made; resuming an interrupted pre-training): deleted, it is rebuilt from the artifacts' lineage; of the
wrong shape, it is ignored with a warning.

Stages write atomically, so an interrupted (even killed) run leaves every finished step complete and every earlier
output in place, and the next run starts at the interrupted step (pre-training resumes from its last saved state
when the same step was interrupted, and restarts otherwise). The ``work`` folder is locked for the whole run: a
second ``mobclf run`` on it is refused at once.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from mobclf.artifacts import MANIFEST, RECIPE_STEP, load_artifact, lock, release, sha256_file
from mobclf.cli import main
from mobclf.console import console
from mobclf.errors import UserError

STATE_FILE = ".recipe-state.json"
RESERVED = {"out": "give the step's `out` instead", "force": "use `mobclf run --force`",
            "restart": "`mobclf run` restarts pre-training when the step changed and resumes it otherwise"}
MAX_NODES = 100_000  # YAML nodes of a recipe, every alias counted as a copy of what it names
MAX_DEPTH = 64  # nesting of YAML collections
MAX_INT = 2**63 - 1  # what torch and numpy hold; larger integers are typos or jokes
MAX_DEMO_ITEMS = 100_000


@click.command("demo-corpus")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="JSONL file to write.")
@click.option("--items", default=3000, show_default=True, type=click.IntRange(min=1, max=MAX_DEMO_ITEMS))
@click.option("--seed", default=42, show_default=True, type=click.IntRange(min=0, max=MAX_INT))
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
def demo_corpus_command(out: Path, items: int, seed: int, force: bool) -> None:
    """Generate the demo corpus (``mobclf.data.demo_corpus``) as a JSONL file, atomically: it is written to a
    hidden temporary file beside ``out`` and renamed into place only once complete, so a full disk or a kill never
    leaves a cut corpus at ``out``."""
    from mobclf.data.demo_corpus import generate_demo_corpus

    if out.is_symlink() or out.is_dir():
        raise UserError("exists and is not a file; choose another `out`", path=out)
    if out.exists() and not force:
        raise UserError("already exists; pass --force to replace it or choose another --out", path=out)
    try:
        generate_demo_corpus(out, n_items=items, seed=seed)  # atomic: a full disk or a kill leaves no cut corpus
    except ValueError as err:
        raise UserError(f"{err}; ask for fewer `items`", path=out) from None


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
    """One validated step: ``args`` is its command line (paths resolved), ``needs`` the ids of the steps it reads,
    ``line`` the recipe line of its ``out`` (or of the step, when the ``out`` is the default)."""

    id: str
    kind: str
    out: Path
    args: tuple[str, ...]
    needs: tuple[str, ...]
    inputs: tuple[Path, ...]  # every path it reads (fingerprinted)
    line: int | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    work: Path
    steps: list[Step] = field(default_factory=list)
    work_line: int | None = None

    @property
    def identity(self) -> str:
        """How artifacts' lineage names this recipe: its absolute path."""
        return str(self.path.resolve())


def _command(kind: str) -> click.Command | None:
    if kind == "demo-corpus":
        return demo_corpus_command
    command: click.Command | None = main
    for name in KINDS[kind].command:
        command = command.commands.get(name) if isinstance(command, click.Group) else None
    return command


# ---- reading -----------------------------------------------------------------------------------------------------


class _RecipeYAML(yaml.SafeLoader):
    """YAML's safe loader, made safe for files from anywhere: a key given twice, an alias inside the node it names
    (``a: &x [*x]``), collections nested deeper than ``MAX_DEPTH`` and documents that would expand past
    ``MAX_NODES`` nodes (every alias counted as a copy: a "billion laughs" is a few lines) are refused at once,
    with the line, instead of silently keeping the last value, recursing or hanging."""

    def __init__(self, stream):
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) → nodes it expands to
        self._open: set[str] = set()  # anchors of the collections being composed
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                raise yaml.composer.ComposerError(None, None, f"the alias *{event.anchor} is inside the node "
                                                  f"&{event.anchor} it names (a recursive alias)", event.start_mark)
            return super().compose_node(parent, index)
        event = self.peek_event()
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        anchor = event.anchor
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [item for pair in node.value for item in pair] if isinstance(node, yaml.MappingNode) else [])
        size = 1 + sum(self._sizes.get(id(child), 1) for child in children)
        self._sizes[id(node)] = size
        if size > MAX_NODES:
            raise yaml.composer.ComposerError(None, None, f"expands to more than {MAX_NODES:,} values through its "
                                              "aliases (a 'billion laughs'?)", node.start_mark)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice (also on line {seen[key]}); keep one",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _line_numbers(root: yaml.Node | None) -> dict[tuple, int]:
    """The line of every key and list item of a composed YAML document, by its path of keys and indices."""
    lines: dict[tuple, int] = {}

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    lines[path + (key.value,)] = key.start_mark.line + 1
                    walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[path + (index,)] = item.start_mark.line + 1
                walk(item, path + (index,))

    walk(root, ())
    return lines


def _read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """A recipe file's content and the line of each of its keys and items; bad YAML is a one-line UserError."""
    try:
        text = path.read_text(encoding="utf-8")
        loader = _RecipeYAML(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        problem = ", ".join(filter(None, [getattr(err, "context", None), getattr(err, "problem", None)]))
        raise UserError(f"not a valid YAML recipe ({problem or str(err).splitlines()[0]})", path=path,
                        line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise UserError("not a valid YAML recipe (nested too deeply)", path=path) from None
    except OSError as err:
        raise UserError(f"cannot read it ({err.strerror})", path=path) from None
    return data, _line_numbers(node)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Loader:
    """Reads and validates one recipe file; every problem is a one-line UserError naming the file and line.
    ``check_paths``: refuse option paths that do not exist (a dry run only shows the plan)."""

    def __init__(self, path: Path, work: Path | None, check_paths: bool = True, variables: dict | None = None):
        self.path = Path(path)
        self.data, self.lines = _read_yaml(self.path)
        self.work_override = work
        self.check_paths = check_paths
        self.variables = {**os.environ, **(variables or {})}

    def error(self, where: tuple, message: str) -> UserError:
        while where and where not in self.lines:
            where = where[:-1]
        return UserError(message, path=self.path, line=self.lines.get(where))

    def substitute(self, value: Any, where: tuple) -> Any:
        """``${VAR}`` and ``${VAR:-default}`` in every string, from the run's variables or the environment; a value
        that is one ``${...}`` alone takes the YAML type of what it becomes (``${ITEMS:-3000}`` is a number)."""
        if isinstance(value, dict):
            return {key: self.substitute(item, where + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.substitute(item, where + (index,)) for index, item in enumerate(value)]
        if not isinstance(value, str):
            return value

        def replace(match: re.Match) -> str:
            name, default = match.groups()
            if name in self.variables:
                return str(self.variables[name])
            if default is None:
                raise self.error(where, f"${{{name}}} is not set; set it or write ${{{name}:-default}}")
            return default

        substituted = _VARIABLE.sub(replace, value)
        if substituted != value and _VARIABLE.fullmatch(value):
            try:
                typed = yaml.safe_load(substituted)
            except yaml.YAMLError:
                return substituted
            return typed if isinstance(typed, (int, float, bool)) else substituted
        return substituted

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
        elif isinstance(data["work"], str) and data["work"] and "\0" not in data["work"]:
            work = self.path_from_recipe(data["work"])
        else:
            raise self.error(("work",), "`work` must be a path (the artifact root)")
        if not isinstance(data["steps"], list) or not data["steps"]:
            raise self.error(("steps",), "`steps` must be a non-empty list")
        recipe = Recipe(name=data["name"], path=self.path, work=work,
                        work_line=None if self.work_override is not None else self.lines.get(("work",)))
        for index, raw in enumerate(data["steps"]):
            step = self.step(raw, ("steps", index), recipe)
            for other in recipe.steps:
                if step.out == other.out or other.out in step.out.parents or step.out in other.out.parents:
                    relation = ("writes" if step.out == other.out else
                                "writes inside" if other.out in step.out.parents else "writes around")
                    raise self.error(("steps", index, "out"), f"step {step.id!r} {relation} the `out` of step "
                                     f"{other.id!r} ({other.out}); give every step an `out` of its own, none "
                                     "inside another")
            recipe.steps.append(step)
        return recipe

    def check_keys(self, mapping: dict, where: tuple, known: set[str], what: str) -> None:
        for key in mapping:
            if key not in known:
                raise self.error(where + (key,), f"unknown key {key!r} in {what}{_did_you_mean(str(key), known)}; "
                                                 f"expected {', '.join(sorted(known))}")

    def out(self, raw: dict, where: tuple, step_id: str, kind: str, work: Path) -> Path:
        """The step's ``out``: a path inside ``work`` (not ``work`` itself), no part of it hidden."""
        out = raw.get("out", step_id + (".jsonl" if KINDS[kind].artifact is None else ""))
        if not isinstance(out, str) or not out or "\0" in out:
            raise self.error(where + ("out",), f"step {step_id!r}: `out` must be a path (relative to `work`)")
        path = (work / Path(out).expanduser()).resolve()
        if path == work:
            raise self.error(where + ("out",), f"step {step_id!r}: `out` {out!r} is `work` itself ({work}); give "
                                               "the step a path inside `work`")
        if work not in path.parents:
            raise self.error(where + ("out",), f"step {step_id!r}: `out` {out!r} is {path}, outside `work` "
                                               f"({work}); a step writes only inside `work`")
        if any(part.startswith(".") for part in path.relative_to(work).parts):
            raise self.error(where + ("out",), f"step {step_id!r}: `out` {out!r} is hidden; hidden names in `work` "
                                               "are mobclf's own (state, locks, partial writes)")
        return path

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
        if not isinstance(kind, str) or kind not in KINDS:
            raise self.error(where + ("kind",), f"step {step_id!r}: unknown kind {kind!r}"
                                                f"{_did_you_mean(str(kind), KINDS)}; expected one of "
                                                f"{', '.join(KINDS)}")
        command = _command(kind)
        if command is None:
            raise self.error(where + ("kind",), f"step {step_id!r}: this mobclf has no `mobclf "
                                                f"{' '.join(KINDS[kind].command)}` command for kind {kind!r}")
        name = f"mobclf {' '.join(KINDS[kind].command)}"
        out_path = self.out(raw, where, step_id, kind, recipe.work)

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
        line = self.lines.get(where + ("out",)) or self.lines.get(where)
        return Step(id=step_id, kind=kind, out=out_path, args=args, needs=tuple(dict.fromkeys(needs)),
                    inputs=tuple(read), line=line)

    def paths(self, value: Any, param: click.Parameter, by_id: bool, earlier: dict[str, Step], at: tuple,
              what: str) -> list[tuple[Path, str | None]]:
        """The paths a path option names (relative to the recipe file; checked to exist as the command wants),
        or an input (an earlier step's id, or ``id/path/inside``), each with the step it comes from."""
        paths = []
        for item in value if isinstance(value, list) and _multiple(param) else [value]:
            if not isinstance(item, str) or not item or "\0" in item:
                raise self.error(at, f"{what}: expected {'an earlier step id' if by_id else 'a path'}, got {item!r}")
            if not by_id:
                path = self.path_from_recipe(item)
                if self.check_paths:
                    try:
                        param.type.convert(str(path), param, None)
                    except click.BadParameter as err:
                        raise self.error(at, f"{what}: {err.message}") from None
                paths.append((path, None))
                continue
            source, _, inside = item.partition("/")
            if source not in earlier:
                raise self.error(at, f"{what}: {item!r} is not an earlier step's id (earlier steps: "
                                     f"{', '.join(earlier) or 'none'})")
            if inside and (Path(inside).is_absolute() or ".." in Path(inside).parts):
                raise self.error(at, f"{what}: {item!r} leaves the output of step {source!r}; name a path inside it")
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


def _check_numbers(value: Any) -> None:
    """Refuse a non-finite float (``.nan``, ``.inf``, ``1e400``) or an integer past ``MAX_INT`` anywhere in a
    value, before or after the option's type converted it: they pass range checks and fail hours later."""
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number; give a plain number")
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise click.BadParameter(f"{value} is out of range (at most {MAX_INT:,})")
    if isinstance(value, dict):
        for item in value.values():
            _check_numbers(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_numbers(item)


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
    _check_numbers(value)
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
        _check_numbers(param.process_value(click.Context(click.Command("recipe")),
                                           tuple(raw) if _multiple(param) else raw[0]))
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


def _is_demo_corpus(step: Step) -> bool:
    """Whether the file at the step's ``out`` is byte for byte the corpus the step generates (cheap to redo)."""
    from mobclf.data.demo_corpus import generate_demo_corpus

    params = demo_corpus_command.make_context("demo-corpus", list(step.args)).params
    with tempfile.TemporaryDirectory(prefix="mobclf-recipe-") as folder:
        expected = Path(folder) / "corpus.jsonl"
        try:
            generate_demo_corpus(expected, n_items=params["items"], seed=params["seed"])
        except ValueError:
            return False
        return sha256_file(expected) == sha256_file(step.out)


def _present(path: Path) -> bool:
    """Whether something is at ``path`` (an empty folder counts as nothing: a stage writes there freely)."""
    if path.is_symlink() or path.is_file():
        return True
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


# what a step finds at its `out`
ABSENT, CURRENT, OURS, FOREIGN = "absent", "current", "ours", "foreign"


def _found(recipe: Recipe, step: Step, state: "_State", fingerprint: str) -> tuple[str, str | None]:
    """What is at the step's ``out`` and its identity (an artifact's manifest hash, a file's hash): nothing; the
    step's up-to-date output (same fingerprint in its lineage; for a demo corpus, the same bytes); an earlier output
    of this recipe step (lineage, or the hash the state file recorded); or something the recipe did not make."""
    out, record = step.out, state.done.get(str(step.out), {})
    if not _present(out):
        return ABSENT, None
    if KINDS[step.kind].artifact is None:
        if out.is_symlink() or not out.is_file():
            return FOREIGN, None
        sha = sha256_file(out)
        if _is_demo_corpus(step):
            return CURRENT, sha
        return (OURS if record.get("sha256") == sha else FOREIGN), sha
    manifest = out / MANIFEST
    if out.is_symlink() or not out.is_dir() or manifest.is_symlink() or not manifest.is_file():
        return FOREIGN, None
    sha = sha256_file(manifest)
    try:
        made = load_artifact(out, kind=KINDS[step.kind].artifact).manifest.get("lineage", {}).get("recipe_step")
    except UserError:
        made = None
    if isinstance(made, dict) and made.get("fingerprint") == fingerprint:
        return CURRENT, sha
    if isinstance(made, dict) and made.get("recipe") == recipe.identity and made.get("step") == step.id:
        return OURS, sha
    # recorded when a step (of this recipe, or of another one sharing `work`) wrote it; a stage given --force
    # still replaces it only if it verifies
    return (OURS if record.get("sha256") == sha else FOREIGN), sha


class _State:
    """``<work>/.recipe-state.json``: for each output path, the step, fingerprint and hash of what a step wrote
    there (``done``), and the steps started but not finished (``running``: pre-training resumes only the same
    interrupted step). Lineage is the truth; this file only remembers what lineage cannot say (who made a plain
    file, what another recipe sharing ``work`` made), so a missing one is rebuilt as steps are checked and one of
    the wrong shape is ignored with a warning."""

    def __init__(self, work: Path):
        self.file = work / STATE_FILE
        self.done: dict[str, dict] = {}
        self.running: dict[str, dict] = {}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return
        except (OSError, ValueError) as err:
            _say(f"{self.file}: unreadable ({getattr(err, 'strerror', None) or err}); ignored, every step's "
                 "output is checked by its lineage")
            return
        if not _state_shape(data):
            _say(f"{self.file}: not a recipe state mobclf wrote; ignored, every step's output is checked by its "
                 "lineage")
            return
        self.done, self.running = data.get("done", {}), data.get("running", {})

    def save(self) -> None:
        tmp = self.file.with_name(self.file.name + ".tmp")
        tmp.write_text(json.dumps({"done": self.done, "running": self.running}, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.file)

    def record(self, step: Step, fingerprint: str, sha256: str) -> None:
        """Remember an output this recipe made (found up to date by its lineage, or just written)."""
        entry = {"step": step.id, "fingerprint": fingerprint, "sha256": sha256}
        if self.done.get(str(step.out)) != entry or str(step.out) in self.running:
            self.running.pop(str(step.out), None)
            self.done[str(step.out)] = entry
            self.save()

    def start(self, step: Step, fingerprint: str) -> None:
        self.running[str(step.out)] = {"step": step.id, "fingerprint": fingerprint, "started": int(time.time())}
        self.save()

    def finish(self, step: Step, fingerprint: str, sha256: str) -> None:
        self.record(step, fingerprint, sha256)


def _state_shape(data: Any) -> bool:
    """Whether ``data`` is what :class:`_State` writes."""
    if not isinstance(data, dict) or set(data) - {"done", "running"}:
        return False
    sections = [data.get("done", {}), data.get("running", {})]
    return all(isinstance(section, dict) and all(
        isinstance(key, str) and isinstance(entry, dict) and isinstance(entry.get("fingerprint"), str)
        for key, entry in section.items()) for section in sections) and all(
        isinstance(entry.get("sha256"), str) for entry in sections[0].values())


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


def _claim_work(recipe: Recipe) -> None:
    """Create ``work`` and lock it for this run; a place that cannot be written is one line."""
    work = recipe.work
    where = dict(path=recipe.path, line=recipe.work_line) if recipe.work_line else dict(path=work)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create `work` {work} ({err.strerror}); choose another `work` (or pass --work)",
                        **where) from None
    if not os.access(work, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to `work` {work}; choose another `work` (or pass --work)", **where)
    lock(work, what="--work")


def run_recipe(path: str | Path, *, work: str | Path | None = None, only=None, force: bool = False,
               dry_run: bool = False, variables: dict | None = None) -> dict[str, str]:
    """Run the recipe at ``path``: every step (or the ``only`` ones and the steps they need) whose output is not up
    to date, in order. ``work`` replaces the recipe's artifact root; ``force`` runs the steps (the ``only`` ones)
    even when up to date (it never lets a step replace what the recipe did not make); ``dry_run`` validates and
    prints the plan without running or writing anything; ``variables`` give the recipe's ``${NAME}`` values (before
    the environment's).

    Returns each considered step's status: "up to date", "ran", or with ``dry_run`` "would run".
    """
    recipe = _Loader(Path(path), Path(work) if work is not None else None, check_paths=not dry_run,
                     variables=variables).load()
    only = [only] if isinstance(only, str) else list(only or [])
    chosen = _selected(recipe, only)
    forced = set(only or chosen) if force else set()
    if dry_run:
        return _run(recipe, chosen, forced, dry_run=True)
    _claim_work(recipe)
    try:
        return _run(recipe, chosen, forced, dry_run=False)
    finally:
        release(recipe.work)


def _run(recipe: Recipe, chosen: set[str], forced: set[str], dry_run: bool) -> dict[str, str]:
    state = _State(recipe.work)
    statuses: dict[str, str] = {}
    _say(f"recipe {recipe.name} ({recipe.path}) → {recipe.work}")
    for step in recipe.steps:
        if step.id not in chosen:
            continue
        stale_input = any(statuses.get(need) == "would run" for need in step.needs)
        fingerprint = _fingerprint(step)
        found, sha = _found(recipe, step, state, fingerprint)
        if found == FOREIGN:
            raise UserError(f"step {step.id!r}: {step.out} is not an output this recipe made (made or changed by "
                            "hand, or from other data) and mobclf run replaces only its own; move it away or give "
                            "the step another `out`", path=recipe.path, line=step.line)
        if found == CURRENT and step.id not in forced and not stale_input:
            statuses[step.id] = "up to date"
            if not dry_run:
                state.record(step, fingerprint, sha)
            _say(f"✓ {step.id} (up to date)" + (f": {_shown(step)}" if dry_run else ""))  # a plan shows each command
            continue
        if dry_run:
            statuses[step.id] = "would run"
            _say(f"• {step.id} would run: {_shown(step)}")
            continue
        _say(f"▶ {step.id}: {_shown(step)}")
        started = time.perf_counter()
        _run_step(recipe, step, state, fingerprint, replace=found != ABSENT)
        statuses[step.id] = "ran"
        _say(f"✓ {step.id} (done in {time.perf_counter() - started:.0f} s)")
    counts = {status: list(statuses.values()).count(status) for status in dict.fromkeys(statuses.values())}
    _say(f"recipe {recipe.name}: " + ", ".join(f"{count} {status}" for status, count in counts.items())
         + f"; artifacts in {recipe.work}")
    return statuses


def _os_advice(err: OSError) -> str:
    from mobclf import cli

    return getattr(cli, "_OS_ADVICE", {}).get(err.errno, f"{err.strerror or err}; check the path and try again")


def _run_step(recipe: Recipe, step: Step, state: _State, fingerprint: str, replace: bool) -> None:
    """Invoke the step's command. ``replace``: the output there is the recipe's own, so the stage gets ``--force``
    and swaps the new output in atomically; nothing is removed beforehand, so an interruption leaves the old one."""
    key = str(step.out)
    resume = state.running.get(key, {}).get("fingerprint") == fingerprint
    args = [*step.args, *(["--force"] if replace else [])]
    if step.kind == "pretrain" and not resume:
        args.append("--restart")  # pre-training resumes its own saved state only for the same, interrupted step
    state.start(step, fingerprint)
    command = _command(step.kind)
    prog = " ".join(["mobclf", *KINDS[step.kind].command])
    argv = sys.argv
    sys.argv = ["mobclf", *KINDS[step.kind].command, *args]  # the artifact's lineage records the equivalent command
    token = RECIPE_STEP.set({"recipe": recipe.identity, "step": step.id, "fingerprint": fingerprint})
    try:
        command.main(args, prog_name=prog, standalone_mode=False)
    except click.ClickException as err:
        raise UserError(f"step {step.id!r} ({prog}) failed: {err.format_message()}", path=recipe.path,
                        line=step.line) from err
    except OSError as err:
        raise UserError(f"step {step.id!r} ({prog}) failed: {_os_advice(err)}",
                        path=err.filename or step.out) from None
    finally:
        RECIPE_STEP.reset(token)
        sys.argv = argv
        release(step.out)
    if KINDS[step.kind].artifact is None:
        made = CURRENT if step.out.is_file() else ABSENT
        sha = sha256_file(step.out) if made == CURRENT else None
    else:
        made, sha = _found(recipe, step, state, fingerprint)
    if made != CURRENT:
        raise UserError(f"step {step.id!r} ({prog}) finished without a verified {KINDS[step.kind].artifact or 'file'}"
                        f" at {step.out}", path=recipe.path, line=step.line)
    state.finish(step, fingerprint, sha)
