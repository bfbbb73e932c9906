"""The ``mobclf`` command line: one command per stage, generated from its declaration in ``mobclf.stages`` (its
inputs, ``--out``, every setting of its config, ``--force``), which builds the config and runs the stage; eval,
predict, demo and run are written out, and build their configs the same way."""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path

import click
from rich.console import Console

from mobclf.errors import UserError, os_advice
from mobclf.protocol import Setting, Stage, build_config, optional_type, settings
from mobclf.stages import STAGES, EvalConfig, PredictConfig


class _Commands(click.Group):
    """The command group: an operating-system error (disk full, read-only, permission denied) is one line naming
    the path and what to do, and whatever outputs a command locked are let go when it ends."""

    def invoke(self, ctx: click.Context):
        from mobclf.artifacts import held, release

        try:
            return super().invoke(ctx)
        except OSError as err:
            advice = os_advice(err)
            # a full disk does not say which file: name the output being written
            raise UserError(advice, path=err.filename or next(iter(held()), None)) from None
        finally:
            release()


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="mobclf")
def main() -> None:
    """Take a news classifier from a server GPU to a phone, and prove it still agrees with the original."""


@main.group()
def data() -> None:
    """Read, check and split labelled news text into a dataset artifact."""


# Stage modules import torch and transformers (seconds); they are imported when a command runs (``Stage.run``
# names its function), so that `mobclf --help` and option errors answer at once.


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and ±inf (which pass every comparison-based range check)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


PATH_IN = click.Path(exists=True, file_okay=False, path_type=Path)
PATH_OUT = click.Path(path_type=Path)
PATH_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _setting_option(setting: Setting) -> click.Option:
    """The click option of one config setting: its flag, type, range, choices, default and help."""
    kind = optional_type(setting.type)[0]
    meta, name, flag = setting.meta, "__".join(setting.path), f"--{setting.flag}"
    shown = setting.default is not None and setting.default is not False and setting.default != []
    common = {"default": setting.default, "show_default": shown, "help": meta["help"]}
    if kind is bool:
        off = setting.off_flag
        return click.Option([f"{flag}/--{off}" if off else flag, name], is_flag=True, **common)
    origin = typing.get_origin(kind)
    if origin is dict:
        return click.Option([flag, name], multiple=True, metavar=meta.get("metavar") or "NAME=VALUE", callback=_pairs,
                            **{**common, "default": [f"{key}={value}" for key, value in setting.default.items()]})
    if origin is tuple and len(typing.get_args(kind)) > 1:
        return click.Option([flag, name], nargs=len(typing.get_args(kind)), type=_scalar_type(typing.get_args(kind)[0],
                                                                                             meta), **common)
    if origin in (list, tuple):
        return click.Option([flag, name], metavar="A,B,...", callback=_comma_list(typing.get_args(kind)[0]),
                            **{**common, "default": ",".join(map(str, setting.default))})
    return click.Option([flag, name], type=_scalar_type(kind, meta), metavar=meta.get("metavar"), **common)


def _scalar_type(kind, meta: dict):
    if meta.get("choices"):
        return click.Choice(meta["choices"])
    bounds = {key: meta.get(key) for key in ("min", "max", "min_open", "max_open")}
    if kind is int:
        return click.IntRange(**bounds) if meta.get("min") is not None or meta.get("max") is not None else int
    if kind is float:
        return FiniteFloat(**bounds)
    return click.Path(path_type=Path) if kind is Path else str


def _pairs(ctx, param, values) -> dict[str, float]:
    """``NAME=VALUE`` options (repeatable) as a mapping; the setting's own check takes it from there."""
    pairs = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            pairs[name.strip()] = float(number) if sep else 1.0
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected {param.metavar}, e.g. soft_kd=1.0") from None
    return pairs


def _comma_list(element):
    def parse(ctx, param, value):
        try:
            return [element(part) for part in str(value).split(",") if part.strip()] if value else []
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected comma-separated {element.__name__} values") from None
    return parse


def stage_command(stage: Stage) -> click.Command:
    """The click command of a stage: its inputs, ``--out``, every config setting and ``--force``; the command only
    builds the config and runs the stage (``Stage.call``)."""
    params: list[click.Parameter] = []
    for spec in stage.inputs:
        kind = PATH_FILE if spec.file else PATH_IN
        if spec.argument:
            params.append(click.Argument([spec.keyword], type=kind, required=spec.required,
                                         metavar=f"[{spec.name.upper()}]" if not spec.required else None))
        else:
            params.append(click.Option([f"--{spec.name}", spec.keyword], type=kind, required=spec.required,
                                       multiple=spec.multiple, help=spec.help))
    params.append(click.Option(["--out"], required=True, type=PATH_OUT,
                               help=f"{stage.produces.capitalize()} artifact directory to write."))
    params += [_setting_option(setting) for setting in settings(stage.config)]
    params.append(click.Option(["--force"], is_flag=True, help="Replace an existing --out artifact."))

    def callback(**values):
        inputs = {spec.keyword: values.pop(spec.keyword) for spec in stage.inputs}
        out, force = values.pop("out"), values.pop("force")
        artifact = stage.call(config_from(stage.config, values), inputs, out, force)
        from mobclf.train.distributed import is_main  # the stage has loaded torch by now
        if not is_main():  # under torchrun rank 0 reports for every process
            return
        summary = stage.summarize(artifact)
        if summary is not None:
            Console().print(summary)
        click.echo(f"{stage.produces} artifact written to {artifact.path}")

    return click.Command(stage.command[-1], params=params, callback=callback, help=stage.help)


@main.group()
def distill() -> None:
    """Distil a teacher into a small student: `mobclf distill textcnn` (or dpcnn, fasttext, textrnn, bilstm-attn,
    tinybert)."""


def config_options(config_type: type):
    """Decorate a command with the click options of every setting of ``config_type`` (as ``stage_command`` does
    for stages); ``config_from`` builds the config back from the values."""
    def decorate(command):
        for setting in reversed(settings(config_type)):
            command.__click_params__ = [*getattr(command, "__click_params__", []), _setting_option(setting)]
        return command
    return decorate


def config_from(config_type: type, values: dict):
    """The ``config_type`` the values of its ``config_options`` describe (other values are ignored)."""
    paths = {"__".join(setting.path): setting.path for setting in settings(config_type)}
    return build_config(config_type, {paths[name]: value for name, value in values.items() if name in paths})


MODEL = click.option("--model", "model_dir", required=True, type=PATH_IN, help="Any model: teacher, student, pruned or "
                     "quantized artifact, or export bundle (run in its runtime).")


@main.command("eval")
@MODEL
@click.option("--data", type=PATH_IN, help="Dataset artifact (scored on --split); or give --file.")
@click.option("--file", "labelled_file", type=PATH_FILE,
              help="A labelled file instead of --data: JSONL, CSV/TSV or THUCNews, read as `data prepare` reads it.")
@config_options(EvalConfig)
@click.option("--json", "json_out", type=PATH_OUT, help="Also write the metrics as JSON to this file.")
def eval_command(model_dir, data, labelled_file, json_out, **values):
    """Micro/macro P/R/F1, subset accuracy and a per-label table of any model, in its runtime with its own
    thresholds, on a split of a dataset artifact or on a labelled file."""
    from mobclf.train.evaluate import run

    config = config_from(EvalConfig, values)
    if (data is None) == (labelled_file is None):
        raise UserError("give the labelled examples either as --data DIR (a dataset artifact) or as --file FILE "
                        "(a labelled file), not both or neither")
    if data is not None and config.reading.given():
        raise UserError(f"{', '.join(config.reading.given())} read a labelled --file; with --data drop them")
    if labelled_file is not None and click.get_current_context().get_parameter_source("split").name != "DEFAULT":
        raise UserError("--split chooses a split of --data; a --file is scored whole: drop --split")
    if json_out is not None:  # checked before the evaluation, not after it
        if json_out.exists() or json_out.is_symlink():
            raise UserError("already exists; choose another --json file", path=json_out)
        if not json_out.parent.is_dir():
            raise UserError("its folder does not exist; create it or choose another --json file", path=json_out)
    metrics = run(config, model_dir, data=data, file=labelled_file)
    if json_out is not None:
        from mobclf.artifacts import atomic_file

        with atomic_file(json_out) as handle:
            handle.write(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")


@main.command("predict")
@click.argument("texts", nargs=-1, metavar="[TEXT]...")
@MODEL
@click.option("--input", "input_file", type=click.Path(path_type=Path, allow_dash=True),
              help="File of texts: JSONL (a 'text' field), CSV/TSV (--text-column) or .txt (one per line); '-' or "
                   "no TEXT and no --input: stdin (one text per line unless --format).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "tsv", "txt"]),
              help="--input's format [default: from the extension; stdin: txt].")
@click.option("--text-column", default="text", show_default=True, help="Text column (CSV/TSV) or field (JSONL).")
@click.option("--output", type=PATH_OUT, help="Write the JSONL here (atomically) instead of to stdout.")
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
@config_options(PredictConfig)
def predict_command(texts, model_dir, input_file, fmt, text_column, output, force, **values):
    """Classify texts with any model, in its runtime with its own tokenizer, thresholds and decision rule: one JSON
    line per text ({"text", "labels", "probabilities"}), or a table when a few texts go to a terminal."""
    import sys

    from mobclf.predict import TABLE_MAX_TEXTS, check_output, check_texts, jsonl, read_texts, run, table, write_jsonl

    config = config_from(PredictConfig, values)
    if texts and input_file is not None:
        raise UserError("give texts either as TEXT arguments or with --input, not both")
    if output is not None:
        check_output(output, force)  # before any work
    from_file = input_file is not None and str(input_file) != "-"
    if texts:
        if fmt is not None:
            raise UserError("--format reads --input or stdin; TEXT arguments are texts as they are: drop --format")
        inputs = check_texts(list(texts))
    elif from_file:
        inputs = read_texts(input_file, fmt, text_column)
    else:
        if sys.stdin.isatty():
            click.echo("reading texts from stdin, one per line (end with Ctrl-D)", err=True)
        inputs = read_texts(None, fmt, text_column, stdin=sys.stdin.buffer.read())
    records = run(config, model_dir, inputs, progress=from_file)
    if output is not None:
        write_jsonl(records, output, force)
        click.echo(f"{len(records)} predictions written to {output}", err=True)
    elif sys.stdout.isatty() and len(records) <= TABLE_MAX_TEXTS:
        Console().print(table(records))
    else:
        click.echo(jsonl(records), nl=False)


@main.command("demo")
@click.option("--out", default=Path("mobclf-demo"), show_default=True, type=PATH_OUT,
              help="Working directory for the demo's corpus and artifacts.")
@click.option("--items", default=3000, show_default=True, type=click.IntRange(min=300),
              help="Size of each generated corpus.")
@click.option("--pretrain-epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--teacher-epochs", default=6, show_default=True, type=click.IntRange(min=1))
@click.option("--student-epochs", default=15, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=42, show_default=True, type=int, help="Seed of the splits and of every training.")
@click.option("--min-agreement", default=0.98, show_default=True, type=FiniteFloat(0, 1),
              help="Parity tolerance of the INT8 and export steps (tiny demos have many labels near a threshold).")
@click.option("--force", is_flag=True, help="Run every step again, even when up to date.")
def demo_command(out, items, pretrain_epochs, teacher_epochs, student_epochs, seed, min_agreement, force):
    """The demo recipe (export_recipes/demo.yaml): a generated multi-label Chinese news corpus → prepare →
    pretrain → teacher → distil (TextCNN and TinyBERT) → INT8 → Android and ONNX bundles → bench. A rerun skips
    what is up to date."""
    from importlib import resources

    from mobclf.recipes import run_recipe

    variables = {"DEMO_ITEMS": items, "DEMO_PRETRAIN_EPOCHS": pretrain_epochs, "DEMO_TEACHER_EPOCHS": teacher_epochs,
                 "DEMO_STUDENT_EPOCHS": student_epochs, "DEMO_SEED": seed, "DEMO_MIN_AGREEMENT": min_agreement}
    with resources.as_file(resources.files("mobclf") / "demo.yaml") as recipe:
        run_recipe(recipe, work=out, force=force, variables=variables)


@main.command("run")
@click.argument("recipe", type=PATH_FILE)
@click.option("--work", type=PATH_OUT, help="Artifact root [default: the recipe's `work`].")
@click.option("--only", multiple=True, metavar="STEP",
              help="Repeatable: run only this step and the steps it needs (when not up to date).")
@click.option("--force", is_flag=True, help="Run the steps (the --only ones) even when up to date (never replaces "
              "what the recipe did not make).")
@click.option("--dry-run", is_flag=True,
              help="Check the recipe and print each step's command and whether it would run.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run the training steps under torchrun with this many processes (one per GPU on CUDA).")
def run_command(recipe, work, only, force, dry_run, nproc):
    """Run a YAML recipe (export_recipes/): the whole pipeline, one mobclf command per step, skipping the steps
    whose outputs are up to date, so an interrupted run continues where it stopped."""
    from mobclf.recipes import run_recipe

    run_recipe(recipe, work=work, only=only, force=force, dry_run=dry_run, processes=nproc)


for _stage in STAGES:
    (main.commands[_stage.command[0]] if len(_stage.command) > 1 else main).add_command(stage_command(_stage))
