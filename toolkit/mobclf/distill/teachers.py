"""Soft targets from several teachers (multi-teacher distillation; anchor: TextBrewer's ``MultiTeacherDistiller``).

TextBrewer averages its teachers' logits. Here any model that gives label probabilities can teach (BERT teachers
and the TF-IDF baseline, whose probabilities are cheap and, on small data, better than a BERT trained from
scratch; calibrated on val), so the teachers' probabilities are averaged per label with the ``--teacher-weights``
(normalised to sum to 1): ``p = Σ wᵢ pᵢ``, each BERT teacher's as its soft-target loss reads it (sigmoid per label
for multi-label data, softmax over the labels for single-label data). The losses then read ``p`` as logits
(``log p − log(1 − p)`` and ``log p``), so ``soft_kd``'s temperature softens the combination as it softens one
teacher. Hints and attention come from the first teacher alone. With one teacher the targets are its cached logits
as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit, softmax

from mobclf.artifacts import Artifact
from mobclf.console import console
from mobclf.distill.teacher_cache import TeacherOutputs, teacher_outputs
from mobclf.errors import UserError
from mobclf.models import load_classifier
from mobclf.models.tfidf import tune_tfidf_baselines
from mobclf.text import load_tokenizer

EPSILON = 1e-6  # probabilities are kept in [ε, 1 − ε] before they become logits
TFIDF_TEACHERS = ("lr", "nb")  # the baselines with probabilities (a linear SVM has none)


@dataclass
class Teacher:
    """One source of soft targets: its probabilities of the transfer texts a batch asks for, and what the manifest
    records of it."""

    probabilities: Callable[[torch.Tensor], torch.Tensor]
    record: dict


class SoftTargets:
    """The soft targets of the transfer texts, the ``teachers``' combined with ``weights``, as logits for the
    prediction losses (one teacher: the ``primary`` cache's logits)."""

    def __init__(self, primary: TeacherOutputs, teachers: list[Teacher], weights: Sequence[float], single_label: bool):
        self.primary, self.teachers, self.weights, self.single_label = primary, teachers, weights, single_label

    def logits(self, index: torch.Tensor) -> torch.Tensor:
        if len(self.teachers) == 1:
            return self.primary.rows("logits", index)
        combined = sum(weight * teacher.probabilities(index) for teacher, weight in zip(self.teachers, self.weights))
        combined = combined.clamp(EPSILON, 1 - EPSILON)
        return combined.log() if self.single_label else combined.log() - (-combined).log1p()

    @property
    def records(self) -> list[dict]:
        return [{**teacher.record, "weight": round(weight, 6)} for teacher, weight in zip(self.teachers, self.weights)]


def _bert_teacher(outputs: TeacherOutputs, artifact: Artifact, single_label: bool) -> Teacher:
    activation = (lambda logits: logits.softmax(-1)) if single_label else torch.sigmoid
    return Teacher(lambda index: activation(outputs.rows("logits", index)),
                   {"teacher": str(artifact.path.resolve()), "sha256": artifact.sha256})


def _scaled(probabilities: np.ndarray, temperature: float, single_label: bool) -> np.ndarray:
    """Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the probabilities whose
    logits are the given ones' divided by ``temperature`` (softmax over labels, or sigmoid per label)."""
    probabilities = np.clip(probabilities, EPSILON, 1 - EPSILON)
    if single_label:
        return softmax(np.log(probabilities) / temperature, axis=1)
    return expit((np.log(probabilities) - np.log1p(-probabilities)) / temperature)  # no overflow at small T


def _temperature(probabilities: np.ndarray, targets: np.ndarray, single_label: bool) -> float:
    """The temperature of least cross-entropy between the scaled ``probabilities`` and ``targets`` (multi-hot) on a
    grid from 0.01 to 10."""
    targets = targets.astype(bool)

    def cross_entropy(temperature: float) -> float:
        scaled = np.clip(_scaled(probabilities, temperature, single_label), EPSILON, 1 - EPSILON)
        if single_label:
            return float(-np.log(scaled[targets]).mean())
        return float(-np.where(targets, np.log(scaled), np.log1p(-scaled)).mean())

    return float(min(np.logspace(-2, 1, 61), key=cross_entropy))


def _tfidf_teacher(dataset, texts: Sequence[str]) -> Teacher:
    """The TF-IDF baseline of best val micro-F1 among those with probabilities, fitted on the training split, and
    its probabilities of ``texts``, calibrated on val by temperature scaling: TF-IDF classifiers rank labels well,
    but their probabilities are nearly flat (TNEWS: 0.09 for the top one of 15), which would drown the teachers'."""
    tuned = tune_tfidf_baselines(dataset.texts("train"), dataset.targets("train", np.uint8), dataset.texts("val"),
                                 dataset.targets("val", np.uint8), language=dataset.language,
                                 multi_label=dataset.multi_label, families=TFIDF_TEACHERS)
    best = max(tuned, key=lambda one: one.val_micro_f1)
    single_label = not dataset.multi_label
    temperature = _temperature(best.baseline.predict_proba(dataset.texts("val")), dataset.targets("val", np.uint8),
                               single_label)
    console.log(f"TF-IDF teacher: {best.name} {best.setting}, val micro-F1 {best.val_micro_f1:.4f}, temperature "
                f"{temperature:.3g} (fitted on val)")
    probabilities = torch.from_numpy(_scaled(best.baseline.predict_proba(list(texts)), temperature,
                                             single_label).astype(np.float32))
    return Teacher(lambda index: probabilities[index],
                   {"teacher": best.name, "setting": best.setting, "val_micro_f1": best.val_micro_f1,
                    "temperature": round(temperature, 4)})


def teacher_weights(weights: Sequence[float], others: int, tfidf: bool) -> list[float]:
    """The ``--teacher-weights`` normalised to sum to 1, one per teacher: the teacher, ``others`` more, and the
    TF-IDF one if ``tfidf`` (none given: equal), checked before anything runs."""
    count = 1 + others + tfidf
    weights = list(weights) or [1.0] * count
    if len(weights) != count or sum(weights) <= 0:
        raise UserError(f"--teacher-weights needs {count} weights, not all 0 (one for --teacher"
                        f"{', each --also-teacher' if others else ''}{', the TF-IDF teacher' if tfidf else ''}); "
                        f"got {', '.join(f'{weight:g}' for weight in weights)}")
    return [weight / sum(weights) for weight in weights]


def soft_targets(primary: TeacherOutputs, primary_artifact: Artifact, others: Sequence[Artifact], tfidf: bool,
                 weights: Sequence[float], dataset, texts: Sequence[str], device) -> SoftTargets:
    """The soft targets of the teacher (``primary``: its cached outputs), the ``others`` (teacher artifacts, run
    over ``texts`` once and cached) and, if ``tfidf``, the TF-IDF baseline, with the ``weights`` of
    :func:`teacher_weights` in that order."""
    single_label = not dataset.multi_label
    teachers = [_bert_teacher(primary, primary_artifact, single_label)]
    for artifact in others:
        outputs = teacher_outputs(artifact, load_classifier(artifact), load_tokenizer(artifact.file("tokenizer")),
                                  texts, device=device)
        teachers.append(_bert_teacher(outputs, artifact, single_label))
    if tfidf:
        teachers.append(_tfidf_teacher(dataset, texts))
    return SoftTargets(primary, teachers, weights, single_label)
