"""The stage protocol: a stage is a frozen, typed config dataclass and one ``run`` function.

A config declares each setting once, with its default, help, choices and range (``setting``); the command line
and recipes are both made from that declaration, so they cannot drift apart (every stage is declared in
``mobclf.stages``):

    @dataclass(frozen=True)
    class QuantizeConfig(StageConfig):
        runtime: str = setting("executorch", "ExecuTorch → model.pte; onnx → model.onnx.", choices=RUNTIMES)
        calibration_size: int = setting(256, "Training texts to calibrate on.", flag="calibration", min=1)

    QUANTIZE = Stage(("quantize",), QuantizeConfig, "mobclf.compress.quantize:run", produces="quantized",
                     inputs=(Input("from", "Student or pruned artifact."), Input("data", "Dataset artifact.")))

``StageConfig.__post_init__`` checks every value (type, choice, range, finite number) whoever builds the config:
the CLI (``cli.stage_command``), a recipe step (``config_from_options``) or Python code. A nested config dataclass
(the training loop's ``FitConfig``) contributes its settings as if they were the stage's own; the stage gives them
its defaults (the field's default factory) and may rename, re-bound or re-explain them (``nested``). ``command_line``
gives the command that makes the same config, which the artifact's lineage records with the config itself.
"""

from __future__ import annotations

import contextvars
import dataclasses
import importlib
import math
import shlex
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mobclf.errors import UserError

MAX_INT = 2**63 - 1  # what torch and numpy hold; a larger integer setting is a typo
CALL: contextvars.ContextVar[dict | None] = contextvars.ContextVar("stage_call", default=None)
"""While a stage runs: its name, its config (JSON) and the equivalent command line, for the lineage it writes."""


def setting(default: Any, help: str, *, flag: str | None = None, off: str | None = None, choices=None,
            min: float | None = None, max: float | None = None, min_open: bool = False, max_open: bool = False,
            metavar: str | None = None) -> Any:
    """A config field with what the command line and recipes need to know about it: ``flag`` (the option's
    name without dashes, default: the field name with dashes), ``off`` (a flag's off switch, e.g. "no-whole-word"),
    ``choices``, and a ``min``/``max`` range (``*_open``: excluded). Lists and dicts take a factory default."""
    meta = {"help": help, "flag": flag, "off": off, "choices": tuple(choices) if choices else None, "min": min,
            "max": max, "min_open": min_open, "max_open": max_open, "metavar": metavar}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def nested(config_type: type, help: str, **overrides: dict) -> Any:
    """A nested config field: ``config_type()`` with the stage's own defaults (``default`` in an override) and
    per-setting changes of flag, range or help, e.g. ``nested(FitConfig, "...", epochs={"default": 3, "min": 0,
    "flag": "recovery-epochs"})``."""
    defaults = {name: change["default"] for name, change in overrides.items() if "default" in change}
    meta = {name: {key: value for key, value in change.items() if key != "default"}
            for name, change in overrides.items()}
    return field(default_factory=lambda: config_type(**defaults), metadata={"help": help, "settings": meta})


class ConfigError(UserError):
    """A setting with a value it cannot have; ``option`` is its flag (without dashes)."""

    def __init__(self, option: str, message: str):
        super().__init__(f"--{option}: {message}")
        self.option, self.problem = option, message


@dataclass(frozen=True)
class Setting:
    """One setting of a (flattened) config: the field, its type, and where it sits (``path`` of nested fields)."""

    path: tuple[str, ...]
    meta: dict  # the field's metadata, with the enclosing stage's changes
    type: Any
    default: Any  # in the enclosing stage

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def flag(self) -> str:
        return self.meta.get("flag") or self.name.replace("_", "-")

    @property
    def off_flag(self) -> str | None:
        """A switch's off flag: its own (``per-layer``), or ``no-<flag>`` when it is on by default."""
        if optional_type(self.type)[0] is not bool:
            return None
        return self.meta.get("off") or ("no-" + self.flag if self.default else None)


def optional_type(kind) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (it, False)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return rest[0], len(rest) < len(typing.get_args(kind))
    return kind, False


def settings(config_type: type, defaults: Any = None, changes: dict | None = None) -> list[Setting]:
    """Every setting of ``config_type``, nested config dataclasses flattened in field order, with the defaults of
    ``defaults`` (an instance; default: ``config_type()``) and the per-setting ``changes`` of an enclosing stage."""
    hints = typing.get_type_hints(config_type)
    defaults = config_type() if defaults is None else defaults
    found = []
    for item in dataclasses.fields(config_type):
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            inner = settings(kind, getattr(defaults, item.name), item.metadata.get("settings", {}))
            found += [dataclasses.replace(setting, path=(item.name, *setting.path)) for setting in inner]
        else:
            meta = {**item.metadata, **(changes or {}).get(item.name, {})}
            found.append(Setting((item.name,), meta, kind, getattr(defaults, item.name)))
    return found


def _check_value(setting: Setting, value: Any) -> Any:
    """``value`` checked against the setting's type, choices and range (ints also stand for floats)."""
    kind, optional = optional_type(setting.type)
    meta = setting.meta
    if value is None:
        if optional:
            return None
        raise ConfigError(setting.flag, "needs a value")
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(setting.flag, f"expected a list, got {value!r}")
        element = typing.get_args(kind)[0]
        if origin is tuple and len(typing.get_args(kind)) > 1 and len(value) != len(typing.get_args(kind)):
            raise ConfigError(setting.flag, f"expected {len(typing.get_args(kind))} values, got {len(value)}")
        return origin(_scalar(setting, element, item, meta) for item in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(setting.flag, f"expected NAME=VALUE pairs, got {value!r}")
        value_type = typing.get_args(kind)[1]
        return {str(key): _scalar(setting, value_type, item, meta) for key, item in value.items()}
    return _scalar(setting, kind, value, meta)


def _scalar(setting: Setting, kind, value: Any, meta: dict) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(setting.flag, f"expected true or false, got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)
                                                                              and not value.is_integer()):
            raise ConfigError(setting.flag, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise ConfigError(setting.flag, f"{value} is out of range (at most {MAX_INT:,})")
        if not math.isfinite(value):
            raise ConfigError(setting.flag, f"{value!r} is not a finite number")
        value = kind(value)
        low, high = meta.get("min"), meta.get("max")
        bounds = [f"{'>' if meta.get('min_open') else '≥'} {low:g}" if low is not None else "",
                  f"{'<' if meta.get('max_open') else '≤'} {high:g}" if high is not None else ""]
        if (low is not None and (value < low or (meta.get("min_open") and value == low))) or \
                (high is not None and (value > high or (meta.get("max_open") and value == high))):
            raise ConfigError(setting.flag, f"{value:g} must be {' and '.join(bound for bound in bounds if bound)}")
        return value
    if kind is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(setting.flag, f"expected a path, got {value!r}")
        return Path(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(setting.flag, f"expected text, got {value!r}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(setting.flag, f"{value!r} is not one of {', '.join(choices)}")
        return value
    raise TypeError(f"settings of type {kind} are not supported")


class StageConfig:
    """Base of every stage config: values are checked (and normalised: lists → tuples for tuple fields, ints →
    floats for float fields) when the config is made, whoever makes it."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if dataclasses.is_dataclass(hints[item.name]):
                if not isinstance(value, hints[item.name]):
                    raise TypeError(f"{item.name} must be a {hints[item.name].__name__}")
                changes = item.metadata.get("settings", {})
                for setting in settings(hints[item.name], value, changes):  # the stage's own bounds apply too
                    if setting.name in changes:
                        _check_value(setting, getattr(value, setting.name))
                continue
            setting = Setting((item.name,), dict(item.metadata), hints[item.name], None)
            object.__setattr__(self, item.name, _check_value(setting, value))


def as_json(config: Any) -> dict:
    """The config as plain JSON values (paths as strings), nested configs as objects."""
    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value
    return {item.name: as_json(getattr(config, item.name)) if dataclasses.is_dataclass(getattr(config, item.name))
            else plain(getattr(config, item.name)) for item in dataclasses.fields(config)}


def build_config(config_type: type, values: dict[tuple[str, ...], Any], defaults: Any = None) -> Any:
    """A config from ``values`` by setting path; missing ones take the defaults of ``defaults`` (an instance;
    default: ``config_type()``, whose nested configs carry the stage's own defaults)."""
    hints = typing.get_type_hints(config_type)
    defaults = config_type() if defaults is None else defaults
    arguments = {}
    for item in dataclasses.fields(config_type):
        if dataclasses.is_dataclass(hints[item.name]):
            inner = {path[1:]: value for path, value in values.items() if path[0] == item.name}
            arguments[item.name] = build_config(hints[item.name], inner, getattr(defaults, item.name))
        else:
            arguments[item.name] = values.get((item.name,), getattr(defaults, item.name))
    return config_type(**arguments)


def flags(config_type: type) -> dict[str, tuple[Setting, bool]]:
    """Every flag (without dashes) of ``config_type``'s settings → (the setting, whether it is an off switch)."""
    found = {setting.flag: (setting, False) for setting in settings(config_type)}
    return found | {setting.off_flag: (setting, True) for setting, _ in found.values() if setting.off_flag}


def config_from_options(config_type: type, options: dict[str, Any], base: Path | None = None) -> Any:
    """A config from recipe-style ``options`` (flags without dashes → values; a flag's ``off`` switch takes a
    boolean too): unknown keys raise ``KeyError``; bad values ``ConfigError``. Relative paths are taken from
    ``base``."""
    known = flags(config_type)
    values: dict[tuple[str, ...], Any] = {}
    for key, value in options.items():
        key = str(key).replace("_", "-")
        setting, off = known[key]
        if off:
            if not isinstance(value, bool):
                raise ConfigError(key, f"expected true or false, got {value!r}")
            value = not value
        kind, _ = optional_type(setting.type)
        if kind is Path and isinstance(value, str) and base is not None:
            value = (base / Path(value).expanduser()).resolve()
        if typing.get_origin(kind) in (list, tuple) and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
            element = typing.get_args(kind)[0]
            try:
                value = [element(part) for part in value]
            except ValueError:
                raise ConfigError(key, f"expected a comma-separated list of {element.__name__}s") from None
        values[setting.path] = value
    return build_config(config_type, values)


def command_arguments(config: Any) -> list[str]:
    """The command-line options that make ``config`` (those that differ from the defaults)."""
    arguments = []
    for setting in settings(type(config)):
        value = config
        for name in setting.path:
            value = getattr(value, name)
        if value == setting.default or (isinstance(value, tuple) and list(value) == list(setting.default)):
            continue
        kind, _ = optional_type(setting.type)
        if kind is bool:
            arguments.append(f"--{setting.flag}" if value else f"--{setting.off_flag}")
        elif typing.get_origin(kind) is dict:
            arguments += [token for key, item in value.items() for token in (f"--{setting.flag}", f"{key}={item}")]
        elif typing.get_origin(kind) is tuple and len(typing.get_args(kind)) > 1:
            arguments += [f"--{setting.flag}", *map(str, value)]
        elif typing.get_origin(kind) in (list, tuple):
            arguments += [f"--{setting.flag}", ",".join(map(str, value))]
        elif value is not None:
            arguments += [f"--{setting.flag}", str(value)]
    return arguments


def _resolve(name: str) -> Callable:
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class Input:
    """An input of a stage: ``name`` is its option (``--data``) and ``run``'s keyword (dashes → underscores; ``from``
    → ``source``); ``file``: a file rather than an artifact directory; ``argument``: a positional argument."""

    name: str
    help: str
    required: bool = True
    multiple: bool = False
    file: bool = False
    argument: bool = False

    @property
    def keyword(self) -> str:
        return "source" if self.name == "from" else self.name.replace("-", "_")


@dataclass(frozen=True)
class Stage:
    """A stage: its command words, config type, ``run(config, *, out, force, **inputs) -> Artifact`` (named as
    "module:function", imported when the stage runs: torch takes seconds to import, ``--help`` should not) and
    inputs."""

    command: tuple[str, ...]
    config: type
    function: str
    inputs: tuple[Input, ...]
    produces: str
    help: str
    summary: str | None = None  # "module:function": artifact → what the command prints about it

    @property
    def run(self) -> Callable:
        return _resolve(self.function)

    def summarize(self, artifact: Any) -> Any:
        return _resolve(self.summary)(artifact) if self.summary else None

    @property
    def name(self) -> str:
        return " ".join(self.command)

    def command_line(self, config: Any, inputs: dict[str, Any], out: Path) -> str:
        """The ``mobclf`` command that runs this stage with ``config`` on ``inputs``, writing ``out``."""
        words = ["mobclf", *self.command]
        for spec in self.inputs:
            given = inputs.get(spec.keyword)
            for path in (given if isinstance(given, (list, tuple)) else [given] if given is not None else []):
                words += [str(path)] if spec.argument else [f"--{spec.name}", str(path)]
        return shlex.join([*words, *command_arguments(config), "--out", str(out)])

    def call(self, config: Any, inputs: dict[str, Any], out: Path, force: bool = False):
        """Run the stage; the artifact it writes records the config and the equivalent command line."""
        token = CALL.set({"stage": self.name, "config": as_json(config),
                          "command": self.command_line(config, inputs, out)})
        try:
            return self.run(config, out=Path(out), force=force, **inputs)
        finally:
            CALL.reset(token)
