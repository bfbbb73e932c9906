"""``mobclf eval``: score a teacher or student artifact on one split of a dataset artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from mobclf.artifacts import load_artifact
from mobclf.console import console
from mobclf.data.dataset import load_dataset
from mobclf.errors import UserError
from mobclf.models import load_classifier, resolve_device
from mobclf.text import load_tokenizer
from mobclf.train.classifier import predict_probs, split_metrics

SUMMARY_KEYS = ("micro_precision", "micro_recall", "micro_f1", "macro_precision", "macro_recall", "macro_f1",
                "subset_accuracy")


def evaluate(model_dir: Path, data: Path, split: str = "test", device: str = "auto") -> dict:
    """Micro/macro precision, recall, F1, subset accuracy and a per-label table, with the artifact's thresholds."""
    artifact = load_artifact(model_dir, kind=("teacher", "student", "pruned"))
    dataset = load_dataset(data)
    dataset.check_labels_of(artifact)
    texts = dataset.texts(split)
    if not texts:
        raise UserError(f"the dataset has no {split!r} examples; choose --split train, val or test", path=data)
    model = load_classifier(artifact).to(resolve_device(device))
    probs = predict_probs(model, load_tokenizer(artifact.file("tokenizer")), texts, resolve_device(device),
                          description=f"eval {split}")
    metrics = split_metrics(probs, dataset, split, np.asarray(artifact.manifest["thresholds"]))
    _print_metrics(metrics, f"{artifact.kind} {artifact.path} on {split} ({len(texts)} texts)")
    return metrics


def _print_metrics(metrics: dict, title: str) -> None:
    summary = Table(title=title)
    for key in SUMMARY_KEYS:
        summary.add_column(key.replace("_", " "), justify="right")
    summary.add_row(*(f"{metrics[key]:.4f}" for key in SUMMARY_KEYS))
    per_label = Table(title="per label")
    for column in ("label", "precision", "recall", "f1", "support"):
        per_label.add_column(column, justify="left" if column == "label" else "right")
    for row in metrics["per_label"]:
        per_label.add_row(row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                          str(row["support"]))
    console.print(summary, per_label)
