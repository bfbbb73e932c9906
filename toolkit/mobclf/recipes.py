"""``mobclf run RECIPE.yaml``: a whole pipeline declared as data, run step by step, resumable.

A recipe names an artifact root (``work``) and an ordered list of steps. Each step is one mobclf stage
(``mobclf.stages``): its ``options`` are the stage's settings (the command's long options without the dashes), its
``inputs`` name the earlier steps whose output it reads, and it writes ``out`` (relative to ``work``; default: the
step id). A step builds the same config the command builds and calls the same ``run``, so a recipe says exactly what
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

Option values have the setting's type: ``true``/``false`` for a switch (``whole-word: false``, or its off
switch ``no-whole-word: true``), a list for a list or several values (``split: [0.8, 0.1, 0.1]``,
``kernel-sizes: [2, 3, 4]``), a mapping for weights (``loss: {soft_kd: 1}``). A distill step picks its student
with ``student: textcnn`` (the default), ``dpcnn``, ``fasttext``, ``textrnn``, ``bilstm-attn`` or ``tinybert``.
Paths in options are relative to the recipe file.
An input may name a path inside a step's output: ``tokenizer-dir: teacher/tokenizer``.

The whole recipe is checked before anything runs, and every problem is one line naming the recipe file and line:
YAML that repeats a key, has a recursive alias or expands past ``MAX_NODES`` nodes (a "billion laughs"); unknown
kinds, keys and options; values the stage's config refuses (type, choice, range, non-finite numbers such as
``.nan``, ``.inf``, ``1e400``, integers past ``protocol.MAX_INT``: the checks the command line gets too); missing
input files; an ``out`` that is hidden, lies outside ``work``, or equals, lies inside or holds another step's
``out``.

What a recipe makes, it knows by lineage: while a step runs, ``mobclf.artifacts.RECIPE_STEP`` is set, so the
artifact records ``lineage["recipe_step"] = {"recipe", "step", "fingerprint"}`` (the fingerprint: the step's
stage, the settings of its config that differ from the defaults, its inputs and the checksums of everything it
reads). A step is skipped ("✓ id (up to date)") when its output verifies and was made with the same
fingerprint; a demo corpus (a plain file) when it is byte for byte the corpus the step would generate. Otherwise
the step runs, and so do the steps after it whose inputs changed.

Nothing the recipe did not make is replaced or removed, not even with ``--force``: an existing output is handed
to its stage (``force``: the stage swaps the new one in atomically) only when the recipe owns it, i.e. its
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

import dataclasses
import difflib
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mobclf import stages
from mobclf.artifacts import (MANIFEST, RECIPE_STEP, RECIPE_STEP_VARIABLE, atomic_file, load_artifact, lock,
                              release, sha256_file)
from mobclf.console import console
from mobclf.errors import UserError, os_advice
from mobclf.protocol import (ConfigError, Input, Stage, StageConfig, as_json, command_arguments, config_from_options,
                             flags, setting)

STATE_FILE = ".recipe-state.json"
RESERVED = {"out": "give the step's `out` instead", "force": "use `mobclf run --force`",
            "restart": "`mobclf run` restarts pre-training when the step changed and resumes it otherwise"}
MAX_NODES = 100_000  # YAML nodes of a recipe, every alias counted as a copy of what it names
MAX_DEPTH = 64  # nesting of YAML collections
MAX_DEMO_ITEMS = 100_000


@dataclass(frozen=True)
class DemoCorpusConfig(StageConfig):
    """A recipe-only step: the generated demo corpus (``mobclf.data.demo_corpus``) as a JSONL file."""

    items: int = setting(3000, "Headlines to generate.", min=1, max=MAX_DEMO_ITEMS)
    seed: int = setting(42, "Seed of the generator.", min=0)


def _write_demo_corpus(config: DemoCorpusConfig, out: Path) -> None:
    """Generate the corpus at ``out``, atomically (``generate_demo_corpus`` writes a hidden file, then renames it):
    a full disk or a kill never leaves a cut corpus there."""
    from mobclf.data.demo_corpus import generate_demo_corpus

    if out.is_symlink() or out.is_dir():
        raise UserError("exists and is not a file; choose another `out`", path=out)
    try:
        generate_demo_corpus(out, n_items=config.items, seed=config.seed)
    except ValueError as err:
        raise UserError(f"{err}; ask for fewer `items`", path=out) from None


STUDENTS = {**stages.DISTILL_TOKEN_STUDENTS, "tinybert": stages.DISTILL_TINYBERT}
KINDS: dict[str, Stage | None] = {  # kind → its stage (None: the demo corpus; distill: chosen by `student`)
    "demo-corpus": None,
    "data": stages.DATA_PREPARE,
    "pretrain": stages.PRETRAIN,
    "teacher": stages.TRAIN_TEACHER,
    "llm-teacher": stages.TRAIN_LLM_TEACHER,
    "distill": stages.DISTILL_TOKEN_STUDENTS["textcnn"],
    "prune": stages.PRUNE,
    "early-exit": stages.EARLY_EXIT,
    "quantize": stages.QUANTIZE,
    "export": stages.EXPORT,
    "cascade": stages.CASCADE,
    "bench": stages.BENCH,
}


@dataclass(frozen=True)
class Step:
    """One validated step: its stage (None: a demo corpus) with the config and inputs it runs on, ``needs`` the ids
    of the steps it reads, ``read`` every path it reads (fingerprinted), ``line`` the recipe line of its ``out`` (or
    of the step, when the ``out`` is the default)."""

    id: str
    kind: str
    stage: Stage | None
    config: Any
    inputs: dict[str, Any]
    out: Path
    needs: tuple[str, ...]
    read: tuple[Path, ...]
    line: int | None = None
    processes: int = 1  # a training step's torchrun processes (`mobclf run --nproc N`)

    @property
    def trains(self) -> bool:
        return hasattr(self.config, "fit")

    @property
    def produces(self) -> str | None:
        """The kind of artifact the step writes (None: a plain file)."""
        return self.stage.produces if self.stage else None

    @property
    def command(self) -> str:
        """The command line that does what the step does."""
        if self.stage is None:
            return shlex.join(["demo-corpus", *command_arguments(self.config), "--out", str(self.out)])
        launcher = f"torchrun --nproc_per_node {self.processes} $(which mobclf) " if self.processes > 1 else ""
        return launcher + self.stage.command_line(self.config, self.inputs, self.out).removeprefix(
            "mobclf " if launcher else "")


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
        out = raw.get("out", step_id + (".jsonl" if KINDS[kind] is None else ""))
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
        out_path = self.out(raw, where, step_id, kind, recipe.work)
        options, inputs = raw.get("options") or {}, raw.get("inputs") or {}
        for key, value in (("options", options), ("inputs", inputs)):
            if not isinstance(value, dict):
                raise self.error(where + (key,), f"step {step_id!r}: `{key}` must be a mapping")
        options = dict(options)
        stage = KINDS[kind]
        if kind == "distill":
            student = options.pop("student", "textcnn")
            if student not in STUDENTS:
                raise self.error(where + ("options", "student"), f"step {step_id!r}: student {student!r} is not one "
                                                                 f"of {', '.join(STUDENTS)}")
            stage = STUDENTS[student]
        config_type = stage.config if stage else DemoCorpusConfig
        name = f"mobclf {stage.name}" if stage else "a demo-corpus step"
        specs = {spec.name: spec for spec in (stage.inputs if stage else ())}
        known = flags(config_type)
        given: dict[Any, str] = {}  # input keyword or setting path → the key that set it
        paths: dict[str, Any] = {}
        values: dict[str, Any] = {}
        needs: list[str] = []
        read: list[Path] = []
        for section, mapping in (("inputs", inputs), ("options", options)):
            for key, value in mapping.items():
                at = where + (section, key)
                flag = str(key).replace("_", "-")
                if flag in RESERVED:
                    raise self.error(at, f"step {step_id!r}: {flag!r} is not a recipe option ({RESERVED[flag]})")
                if flag not in specs and flag not in known:
                    raise self.error(at, f"step {step_id!r}: unknown option {key!r} for {name}"
                                         f"{_did_you_mean(flag, [*specs, *known])}"
                                         + (f" (see `{name} --help`)" if stage else ""))
                target = specs[flag].keyword if flag in specs else known[flag][0].path
                if target in given:
                    raise self.error(at, f"step {step_id!r}: {key!r} sets what {given[target]!r} already sets")
                given[target] = str(key)
                if value is None:
                    continue  # `key: null` leaves the setting at its default, as leaving it out does
                if flag in specs:
                    spec = specs[flag]
                    found = self.paths(value, spec, section == "inputs", earlier, at, f"step {step_id!r}: {key}")
                    needs.extend(source for _, source in found if source)
                    read.extend(path for path, _ in found)
                    paths[spec.keyword] = [path for path, _ in found] if spec.multiple else found[0][0]
                    continue
                if section == "inputs":
                    raise self.error(at, f"step {step_id!r}: {key!r} is not a path; put it under `options`")
                values[flag] = value
        missing = [spec.name for spec in specs.values() if spec.required and spec.keyword not in paths]
        if missing:
            raise self.error(where, f"step {step_id!r}: {name} needs {', '.join(missing)} (under `inputs` as an "
                                    "earlier step's id, or under `options`)")
        try:
            config = config_from_options(config_type, values, base=self.path.parent)
        except ConfigError as err:
            key = next((key for key in options if str(key).replace("_", "-") == err.option), None)
            raise self.error(where + ("options", key) if key else where,
                             f"step {step_id!r}: {key or err.option}: {err.problem}") from None
        line = self.lines.get(where + ("out",)) or self.lines.get(where)
        return Step(id=step_id, kind=kind, stage=stage, config=config, inputs=paths, out=out_path,
                    needs=tuple(dict.fromkeys(needs)), read=tuple(read), line=line)

    def paths(self, value: Any, spec: Input, by_id: bool, earlier: dict[str, Step], at: tuple,
              what: str) -> list[tuple[Path, str | None]]:
        """The paths an input names: under ``options`` paths relative to the recipe file (checked to exist, as a
        file or an artifact folder as the input wants), under ``inputs`` an earlier step's id or ``id/path/inside``;
        each with the step it comes from."""
        found = []
        for item in value if isinstance(value, list) and spec.multiple else [value]:
            if not isinstance(item, str) or not item or "\0" in item:
                raise self.error(at, f"{what}: expected {'an earlier step id' if by_id else 'a path'}, got {item!r}")
            if not by_id:
                path = self.path_from_recipe(item)
                if self.check_paths and not (path.is_file() if spec.file else path.is_dir()):
                    raise self.error(at, f"{what}: {'file' if spec.file else 'folder'} {path} does not exist")
                found.append((path, None))
                continue
            source, _, inside = item.partition("/")
            if source not in earlier:
                raise self.error(at, f"{what}: {item!r} is not an earlier step's id (earlier steps: "
                                     f"{', '.join(earlier) or 'none'})")
            if inside and (Path(inside).is_absolute() or ".." in Path(inside).parts):
                raise self.error(at, f"{what}: {item!r} leaves the output of step {source!r}; name a path inside it")
            found.append((earlier[source].out / inside if inside else earlier[source].out, source))
        return found


def _did_you_mean(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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


def _fingerprint(step: Step, settings: dict | None = None) -> str:
    """"Up to date" in one value: the stage, the settings of its config that differ from the stage's defaults (so a
    setting added to mobclf later leaves earlier outputs current), its inputs and their checksums, and where it
    writes. ``settings``: other config values to use (see :func:`_fingerprint_before_defaults`)."""
    if settings is None:
        settings = _differing(step.config, type(step.config)())
    record = {"stage": step.stage.name if step.stage else step.kind, "config": settings,
              "inputs": {keyword: str(value) for keyword, value in step.inputs.items()}, "out": str(step.out),
              "checksums": {str(path): _digest(path) for path in step.read}}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _differing(config: Any, default: Any) -> dict:
    """The settings of ``config`` (as JSON) whose values differ from those of ``default``, nested configs likewise."""
    values, defaults, kept = as_json(config), as_json(default), {}
    for item in dataclasses.fields(config):
        if dataclasses.is_dataclass(getattr(config, item.name)):
            inner = _differing(getattr(config, item.name), getattr(default, item.name))
            if inner:
                kept[item.name] = inner
        elif values[item.name] != defaults[item.name]:
            kept[item.name] = values[item.name]
    return kept


def _fingerprint_before_defaults(step: Step, recorded: Any) -> str | None:
    """The fingerprint of an output made before fingerprints left defaults out: over the whole config, as far as
    its lineage recorded the config (``recorded``); a setting added since must be at its default (else None)."""

    def as_recorded(config: Any, default: Any, record: Any) -> dict | None:
        if not isinstance(record, dict):
            return None
        values, defaults, kept = as_json(config), as_json(default), {}
        for item in dataclasses.fields(config):
            value = getattr(config, item.name)
            if item.name not in record:
                if values[item.name] != defaults[item.name]:
                    return None
            elif dataclasses.is_dataclass(value):
                kept[item.name] = as_recorded(value, getattr(default, item.name), record[item.name])
                if kept[item.name] is None:
                    return None
            else:
                kept[item.name] = values[item.name]
        return kept

    settings = as_recorded(step.config, type(step.config)(), recorded)
    return None if settings is None else _fingerprint(step, settings)


def _is_demo_corpus(step: Step) -> bool:
    """Whether the file at the step's ``out`` is byte for byte the corpus the step generates (cheap to redo)."""
    from mobclf.data.demo_corpus import generate_demo_corpus

    with tempfile.TemporaryDirectory(prefix="mobclf-recipe-") as folder:
        expected = Path(folder) / "corpus.jsonl"
        try:
            generate_demo_corpus(expected, n_items=step.config.items, seed=step.config.seed)
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
    if step.produces is None:
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
        lineage = load_artifact(out, kind=step.produces).manifest.get("lineage", {})
    except UserError:
        lineage = {}
    made = lineage.get("recipe_step")
    if isinstance(made, dict) and (made.get("fingerprint") == fingerprint or made.get("fingerprint") ==
                                   _fingerprint_before_defaults(step, (lineage.get("stage") or {}).get("config"))):
        return CURRENT, sha  # the older form only when needed: a fingerprint hashes every input the step reads
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
        with atomic_file(self.file) as handle:
            handle.write(json.dumps({"done": self.done, "running": self.running}, indent=2) + "\n")

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
               dry_run: bool = False, variables: dict | None = None, processes: int = 1) -> dict[str, str]:
    """Run the recipe at ``path``: every step (or the ``only`` ones and the steps they need) whose output is not up
    to date, in order. ``work`` replaces the recipe's artifact root; ``force`` runs the steps (the ``only`` ones)
    even when up to date (it never lets a step replace what the recipe did not make); ``dry_run`` validates and
    prints the plan without running or writing anything; ``variables`` give the recipe's ``${NAME}`` values (before
    the environment's); ``processes`` > 1 runs the training steps under torchrun with that many processes.

    Returns each considered step's status: "up to date", "ran", or with ``dry_run`` "would run".
    """
    recipe = _Loader(Path(path), Path(work) if work is not None else None, check_paths=not dry_run,
                     variables=variables).load()
    if processes > 1:
        recipe = dataclasses.replace(recipe, steps=[dataclasses.replace(step, processes=processes) if step.trains
                                                    else step for step in recipe.steps])
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
            _say(f"✓ {step.id} (up to date)" + (f": {step.command}" if dry_run else ""))  # a plan shows each command
            continue
        if dry_run:
            statuses[step.id] = "would run"
            _say(f"• {step.id} would run: {step.command}")
            continue
        _say(f"▶ {step.id}: {step.command}")
        started = time.perf_counter()
        _run_step(recipe, step, state, fingerprint, replace=found != ABSENT)
        statuses[step.id] = "ran"
        _say(f"✓ {step.id} (done in {time.perf_counter() - started:.0f} s)")
    counts = {status: list(statuses.values()).count(status) for status in dict.fromkeys(statuses.values())}
    _say(f"recipe {recipe.name}: " + ", ".join(f"{count} {status}" for status, count in counts.items())
         + f"; artifacts in {recipe.work}")
    return statuses


def _run_under_torchrun(step: Step, owner: dict, force: bool):
    """Run a training step as its command on ``step.processes`` torchrun processes (``python -m
    torch.distributed.run``, the module behind ``torchrun``); its artifact's lineage names the recipe step as
    in-process steps do, through ``MOBCLF_RECIPE_STEP``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(step.processes), "-m", "mobclf",
               *shlex.split(step.stage.command_line(step.config, step.inputs, step.out))[1:],
               *(["--force"] if force else [])]
    done = subprocess.run(command, env={**os.environ, RECIPE_STEP_VARIABLE: json.dumps(owner)})
    if done.returncode:
        raise UserError(f"its {step.processes} torchrun processes stopped with status {done.returncode} (their "
                        "messages are above)")
    return load_artifact(step.out)


def _run_step(recipe: Recipe, step: Step, state: _State, fingerprint: str, replace: bool) -> None:
    """Run the step's stage with its config. ``replace``: the output there is the recipe's own, so the stage may
    replace it (``force``) and swaps the new output in atomically; nothing is removed beforehand, so an
    interruption leaves the old one."""
    key = str(step.out)
    resume = state.running.get(key, {}).get("fingerprint") == fingerprint
    config = step.config
    if step.trains and not resume:  # a training step resumes only its own interrupted run's saved state
        config = dataclasses.replace(config, fit=dataclasses.replace(config.fit, restart=True))
    state.start(step, fingerprint)
    what = step.stage.name if step.stage else "demo-corpus"
    owner = {"recipe": recipe.identity, "step": step.id, "fingerprint": fingerprint}
    token = RECIPE_STEP.set(owner)
    try:
        if step.stage is None:
            _write_demo_corpus(config, step.out)
            artifact = None
        elif step.processes > 1:
            artifact = _run_under_torchrun(dataclasses.replace(step, config=config), owner, replace)
        else:
            artifact = step.stage.call(config, step.inputs, step.out, force=replace)
    except UserError as err:
        raise UserError(f"step {step.id!r} ({what}) failed: {err.format_message()}", path=recipe.path,
                        line=step.line) from err
    except OSError as err:
        raise UserError(f"step {step.id!r} ({what}) failed: {os_advice(err)}",
                        path=err.filename or step.out) from None
    finally:
        RECIPE_STEP.reset(token)
        release(step.out)
    if step.produces is None:
        made = CURRENT if step.out.is_file() else ABSENT
        sha = sha256_file(step.out) if made == CURRENT else None
    else:
        made, sha = _found(recipe, step, state, fingerprint)
    if made != CURRENT:
        raise UserError(f"step {step.id!r} ({what}) finished without a verified {step.produces or 'file'} at "
                        f"{step.out}", path=recipe.path, line=step.line)
    summary = step.stage.summarize(artifact) if step.stage else None
    if summary is not None:
        console.print(summary)  # what the stage's command shows of its artifact
    state.finish(step, fingerprint, sha)
