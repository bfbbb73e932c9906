"""What teachers and students share after training: probabilities, threshold tuning, scores, and the artifact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobclf.artifacts import Artifact, lineage, write_artifact
from mobclf.data.dataset import Dataset
from mobclf.models import architecture_of, count_parameters, save_weights
from mobclf.train import distributed
from mobclf.train.batching import TokenizedTexts, predict_logits
from mobclf.train.loop import FitConfig, FitResult
from mobclf.train.metrics import classification_metrics
from mobclf.train.thresholds import predict_labels, tune_thresholds


def predict_probs(model: nn.Module, tokenizer, texts: Sequence[str], device: torch.device | str = "cpu",
                  batch_size: int = 128, description: str = "predicting") -> np.ndarray:
    logits = predict_logits(model, TokenizedTexts(tokenizer, texts), batch_size, device, description)
    return torch.sigmoid_(logits).numpy()


def split_metrics(probs: np.ndarray, dataset: Dataset, split: str, thresholds: np.ndarray) -> dict:
    predictions = predict_labels(probs, thresholds, single_label=not dataset.multi_label)
    return classification_metrics(dataset.targets(split, np.uint8), predictions, dataset.labels)


def val_micro_f1(model: nn.Module, tokenizer, dataset: Dataset, device: torch.device | str) -> float:
    """The early-stopping score: val micro-F1 at threshold 0.5 (argmax for single-label data)."""
    probs = predict_probs(model, tokenizer, dataset.texts("val"), device, description="val")
    return split_metrics(probs, dataset, "val", np.full(len(dataset.labels), 0.5))["micro_f1"]


def tune_and_score(model: nn.Module, tokenizer, dataset: Dataset, objective: str, device: torch.device | str,
                   batch_size: int = 128) -> tuple[np.ndarray, dict, dict, dict]:
    """Tune per-label thresholds on val, then score val and test.

    Returns the thresholds, the tuning info, metrics per split and the predicted label matrices per split.
    """
    single_label = not dataset.multi_label
    val_probs = predict_probs(model, tokenizer, dataset.texts("val"), device, batch_size, "val")
    thresholds, info = tune_thresholds(val_probs, dataset.targets("val", np.uint8), objective=objective)
    predictions = {"val": predict_labels(val_probs, thresholds, single_label)}
    del val_probs  # [texts × labels] floats: one split's at a time
    if dataset.texts("test"):
        predictions["test"] = predict_labels(predict_probs(model, tokenizer, dataset.texts("test"), device,
                                                           batch_size, "test"), thresholds, single_label)
    metrics = {split: classification_metrics(dataset.targets(split, np.uint8), predicted, dataset.labels)
               for split, predicted in predictions.items()}
    return thresholds, info, metrics, predictions


def write_classifier(out: Path, kind: str, model: nn.Module, tokenizer, dataset: Dataset, parents: list[Artifact],
                     thresholds: np.ndarray, threshold_info: dict, metrics: dict, fit_config: FitConfig,
                     fit_result: FitResult, extra: dict, force: bool) -> Artifact:
    """Save a trained classifier as a ``teacher``/``student`` artifact (weights, tokenizer, manifest); under torchrun
    rank 0 writes it and every rank returns it."""

    def write() -> None:
        with write_artifact(out, kind=kind, force=force) as artifact:
            save_weights(model.cpu(), artifact.dir)
            tokenizer.save(artifact.dir / "tokenizer")
            artifact.manifest.update({
                "architecture": architecture_of(model),
                "params": count_parameters(model),
                "tokenizer": tokenizer.spec,
                "labels": dataset.labels,
                "multi_label": dataset.multi_label,
                "output_activation": "sigmoid",
                "thresholds": [round(float(t), 4) for t in thresholds],
                "threshold_tuning": threshold_info,
                "metrics": metrics,
                "training": {"config": asdict(fit_config), "best_epoch": fit_result.best_epoch,
                             "seconds": fit_result.seconds, "history": fit_result.history,
                             "stopped": fit_result.stopped, "processes": fit_result.processes,
                             "resumed_from": fit_result.resumed_from},
                **extra,
                "lineage": lineage(parents, fit_config.seed),
            })

    return distributed.written_by_main(out, write)
