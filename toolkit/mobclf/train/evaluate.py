"""``mobclf eval``: score any model (teacher, student, pruned, quantized artifact or export bundle, each in its own
runtime with its own thresholds and decision rule) on a split of a dataset artifact or on a labelled file.

    metrics = run(EvalConfig(split="test"), Path("bundle"), data=Path("data"))
    metrics = run(EvalConfig(reading=LabelledFileOptions(ignore_unknown_labels=True)), Path("student"),
                  file=Path("next-month.jsonl"))

A labelled file is read as ``mobclf data prepare`` reads it (``read_labelled``); its labels must be labels the model
knows: an unknown one is refused naming it and the line it first appears on, or, with ``ignore_unknown_labels``,
dropped (rows left without a label are dropped too) and counted. Labels the model knows that the file lacks simply
have no support.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from mobclf.console import console
from mobclf.data.readers import read_class_file, read_labelled
from mobclf.errors import UserError
from mobclf.stages import EvalConfig, LabelledFileOptions
from mobclf.train.metrics import classification_metrics

SUMMARY_KEYS = ("micro_precision", "micro_recall", "micro_f1", "macro_precision", "macro_recall", "macro_f1",
                "subset_accuracy")
SPLITS = ("train", "val", "test")


@dataclass
class Labelled:
    """Texts with multi-hot targets in a model's label order, where they came from, and what was dropped."""

    texts: list[str]
    targets: np.ndarray  # uint8 multi-hot [N, len(labels)]
    labels: list[str]
    source: str  # "test split of runs/data", "news.jsonl"
    dropped: dict = field(default_factory=dict)  # ignore_unknown_labels: {"labels": {name: rows}, "rows": n}


def labelled_split(data, split: str, *models) -> Labelled:
    """``split`` of the dataset artifact ``data`` (a directory or a loaded ``Dataset``), checked to have the labels
    of every artifact in ``models``."""
    from mobclf.data.dataset import load_dataset

    dataset = load_dataset(data) if isinstance(data, (str, Path)) else data
    dataset.check_labels_of(*models)
    texts = list(dataset.texts(split))  # a val or test split: scored whole
    if not texts:
        raise UserError(f"the dataset has no {split!r} examples; choose another --split", path=dataset.artifact.path)
    return Labelled(texts, dataset.targets(split, np.uint8), dataset.labels,
                    f"{split} split of {dataset.artifact.path}")


def labelled_file(path: Path, labels: list[str], options: LabelledFileOptions = LabelledFileOptions()) -> Labelled:
    """The rows of a labelled file with targets in ``labels`` order (a model's). Labels not in ``labels`` are
    refused naming them and the file:line of the first, unless ``options.ignore_unknown_labels``: then they are
    dropped, rows left without a label are dropped, and both are counted (and logged)."""
    class_names = read_class_file(options.class_file) if options.class_file is not None else None
    rows = read_labelled(Path(path), options.fmt, text_column=options.text_column, label_column=options.label_column,
                         label_sep=options.label_sep, class_names=class_names)
    known = {label: index for index, label in enumerate(labels)}
    unknown = Counter(label for row in rows for label in row.labels if label not in known)
    dropped = {}
    if unknown:
        first = next(row for row in rows if any(label not in known for label in row.labels))
        names = ", ".join(repr(label) for label in list(unknown)[:5]) + (" ..." if len(unknown) > 5 else "")
        if not options.ignore_unknown_labels:
            raise UserError(f"{len(unknown)} label(s) the model does not know: {names} (first on this line); the "
                            f"model knows {', '.join(map(repr, labels[:5]))}{' ...' if len(labels) > 5 else ''}. "
                            "Fix the file or pass --ignore-unknown-labels to drop them",
                            path=first.path, line=first.line)
        kept = [row for row in rows if any(label in known for label in row.labels)]
        dropped = {"labels": dict(unknown), "rows": len(rows) - len(kept)}
        console.log(f"{path}: dropped {sum(unknown.values())} unknown label(s) ({names}) and "
                    f"{dropped['rows']} row(s) left without a label (--ignore-unknown-labels)")
        rows = kept
        if not rows:
            raise UserError("no row has a label the model knows; nothing to score", path=path)
    targets = np.zeros((len(rows), len(labels)), dtype=np.uint8)
    for number, row in enumerate(rows):
        targets[number, [known[label] for label in row.labels if label in known]] = 1
    return Labelled([row.text for row in rows], targets, list(labels), str(path), dropped)


def run(config: EvalConfig, model_dir: Path, data: Path | None = None, file: Path | None = None) -> dict:
    """Micro/macro precision, recall, F1, subset accuracy and a per-label table of the model at ``model_dir`` (any
    model artifact or bundle, in its runtime, with its own thresholds and decision rule) on ``config.split`` of the
    dataset artifact ``data`` or on the labelled ``file`` (exactly one of them)."""
    from mobclf.artifacts import load_artifact
    from mobclf.bench.variants import KINDS, open_model

    if (data is None) == (file is None):
        raise UserError("give the examples either as --data DIR (a dataset artifact) or as --file FILE (a labelled "
                        "file), not both or neither")
    artifact = load_artifact(model_dir, kind=KINDS)
    examples = (labelled_split(data, config.split, artifact) if data is not None
                else labelled_file(file, artifact.labels, config.reading))
    model = open_model(artifact, config.bundle_file, config.device)
    answers = model.answer(examples.texts, config.batch_size, description=f"eval {Path(examples.source).name}"
                           if file is not None else f"eval {config.split}")
    metrics = classification_metrics(examples.targets, answers.choices, examples.labels)
    if answers.escalated is not None:
        metrics["escalation_rate"] = float(answers.escalated.mean()) if len(answers.escalated) else 0.0
    if answers.exit_layers is not None:
        metrics["mean_exit_layer"] = float(answers.exit_layers.mean()) if len(answers.exit_layers) else 0.0
    if examples.dropped:
        metrics["dropped_unknown_labels"] = examples.dropped
    _print_metrics(metrics, f"{model.description} on {examples.source} ({len(examples.texts)} texts)")
    return metrics


HEAD_AND_TAIL = 10  # per-label rows printed at each end when there are more labels than fit a screen


def _print_metrics(metrics: dict, title: str) -> None:
    summary = Table(title=title)
    for key in SUMMARY_KEYS:
        summary.add_column(key.replace("_", " "), justify="right")
    summary.add_row(*(f"{metrics[key]:.4f}" for key in SUMMARY_KEYS))
    rows = metrics["per_label"]
    shown = rows
    caption = None
    present = sorted((row for row in rows if row["support"]), key=lambda row: -row["support"])
    if len(present) > 2 * HEAD_AND_TAIL + 1:  # hundreds of labels: the most frequent, the rarest, and a summary
        shown = present[:HEAD_AND_TAIL] + [None] + present[-HEAD_AND_TAIL:]
        absent = len(rows) - len(present)
        caption = (f"{len(rows)} labels: the {HEAD_AND_TAIL} most and the {HEAD_AND_TAIL} least frequent here. "
                   f"F1 ≥ 0.9 on {sum(row['f1'] >= 0.9 for row in present)}, 0 on "
                   f"{sum(row['f1'] == 0 for row in present)} of the {len(present)} with texts here"
                   + (f"; {absent} without any" if absent else "") + ". --json has every label.")
    per_label = Table(title="per label", caption=caption)
    for column in ("label", "precision", "recall", "f1", "support"):
        per_label.add_column(column, justify="left" if column == "label" else "right")
    for row in shown:
        if row is None:
            per_label.add_row(f"… {len(present) - 2 * HEAD_AND_TAIL} more …", "", "", "", "")
            continue
        per_label.add_row(row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                          str(row["support"]))
    console.print(summary, per_label)
