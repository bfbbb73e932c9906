"""``mobclf early-exit``: give a BERT student an exit after every layer and calibrate when a text may leave (the
model is ``models/early_exit.py``'s ``EarlyExitBert``).

**Training** (DeeBERT's second stage, FastBERT's self-distillation): the student stays as it was, so its [CLS]
state after every layer and its logits are computed once per text, and the exits learn from those alone: soft-target
KD towards the last layer's predictions (``soft_kd``) and the gold labels (``hard_bce``), early-stopped on the
exits' mean val micro-F1. Unlabelled texts (``--unlabeled``) add KD targets, as in FastBERT.

**Calibration** (on val): a text leaves at the first exit whose confidence reaches the threshold (the cascade's
confidence: ``cascade.py``). Every candidate threshold gives a micro-F1 and a mean number of layers run; the
threshold is the one of the fewest layers whose micro-F1 keeps ``keep`` of the student's own, on val and in
``assurance`` of bootstrap resamples of val (``cascade.Margin``). The curve (mean layers, micro-F1) is stored in the
manifest with the share of texts that left at each exit, on val and test.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from mobclf.artifacts import Artifact, load_artifact
from mobclf.cascade import CURVE_POINTS, Margin, confidence, per_text_counts
from mobclf.console import console
from mobclf.data.dataset import load_dataset, read_texts
from mobclf.distill.losses import Batch, gold_label_bce, soft_target_kd
from mobclf.errors import UserError
from mobclf.models import load_classifier, resolve_device
from mobclf.models.bert import BertClassifier
from mobclf.models.early_exit import EarlyExitBert, confidence_kind
from mobclf.stages import EarlyExitConfig
from mobclf.text import load_tokenizer
from mobclf.train.batching import TokenizedTexts, predict_logits
from mobclf.train.classifier import predict_probs, split_metrics, write_classifier
from mobclf.train.loop import fit
from mobclf.train.losses import label_pos_weights
from mobclf.train.metrics import f1_from_counts
from mobclf.train.thresholds import predict_labels

CANDIDATES = 2000  # most thresholds calibration tries (quantiles of the val confidences beyond that)
NONE_LEAVE = 2.0  # a threshold above every confidence (both kinds lie in [0, 1])


def _features(model: EarlyExitBert, tokenizer, texts: list[str], device: torch.device,
              description: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.features`` of every text: [CLS] states ``[N, depth - 1, hidden]`` and the student's logits."""
    hidden = model.base.bert.config.hidden_size

    def flat(input_ids, attention_mask):  # one row per text, as predict_logits collects them
        with torch.no_grad():
            cls_states, logits = model.features(input_ids, attention_mask)
        return torch.cat([cls_states.flatten(1), logits], dim=1)

    rows = predict_logits(flat, TokenizedTexts(tokenizer, texts), device=device, description=description)
    cut = (model.depth - 1) * hidden
    return rows[:, :cut].reshape(len(texts), model.depth - 1, hidden), rows[:, cut:]


def exit_choices(exit_probs: np.ndarray, thresholds: np.ndarray, single_label: bool) -> np.ndarray:
    """Multi-hot choices ``[depth, N, labels]`` of every exit, by the student's thresholds and decision rule."""
    return np.stack([predict_labels(probs, thresholds, single_label) for probs in exit_probs])


def leave_at(confidences: np.ndarray, threshold: float) -> np.ndarray:
    """The rule: each text's exit (0-based) is the first whose confidence ``[depth - 1, N]`` reaches ``threshold``,
    the last (``depth - 1``) when none does."""
    sure = np.vstack([confidences >= threshold, np.ones((1, confidences.shape[1]), dtype=bool)])
    return sure.argmax(axis=0)


def calibrate(confidences: np.ndarray, choices: np.ndarray, gold: np.ndarray, keep: float, assurance: float) -> dict:
    """The threshold of fewest mean layers whose micro-F1 is at least ``keep`` × the last exit's on val and in
    ``assurance`` of its resamples, from the early exits' ``confidences`` ``[depth - 1, N]`` and every exit's
    ``choices`` ``[depth, N, labels]``."""
    depth, n = choices.shape[0], choices.shape[1]
    counts = np.stack([per_text_counts(chosen, gold) for chosen in choices])  # [depth, N, 3]
    values = np.unique(confidences)
    if len(values) > CANDIDATES:
        values = np.unique(np.quantile(values, np.linspace(0, 1, CANDIDATES)))
    # between two neighbouring confidences (no rounding moves a text across), and the two ends: 0, every text leaves
    # at the first exit; 2, above any confidence, none leaves before the last
    candidates = np.concatenate([[0.0], (values[1:] + values[:-1]) / 2, [NONE_LEAVE]])
    layers, f1 = np.empty(len(candidates)), np.empty(len(candidates))
    for i, threshold in enumerate(candidates):
        exits = leave_at(confidences, threshold)
        tp, fp, fn = counts[exits, np.arange(n)].sum(axis=0)
        layers[i], f1[i] = exits.mean() + 1, f1_from_counts(tp, fp, fn)
    margin = Margin(counts[-1], keep)
    allowed = np.flatnonzero(f1 >= keep * f1[-1] - 1e-12)
    for best in allowed[np.lexsort((-f1[allowed], layers[allowed]))]:  # fewest layers, then the best F1
        assured = margin.assured(margin.weights @ counts[leave_at(confidences, candidates[best]), np.arange(n)])
        if assured >= assurance:  # the last candidate, all layers for every text, keeps it in every resample
            break
    shown = np.unique(np.concatenate([np.linspace(0, len(candidates) - 1, min(CURVE_POINTS, len(candidates)))
                                      .round().astype(int), [best]]))
    return {"threshold": float(candidates[best]), "micro_f1": float(f1[best]), "mean_layers": float(layers[best]),
            "student_micro_f1": float(f1[-1]), "assured": assured, "depth": depth,
            "curve": [(float(layers[i]), float(f1[i])) for i in shown]}


def exit_shares(exits: np.ndarray, depth: int) -> list[float]:
    """The share of texts that left at each exit (0-based ``exits``)."""
    return [float(share) for share in np.bincount(exits, minlength=depth) / max(len(exits), 1)]


def run(config: EarlyExitConfig, *, source: Path, data: Path, out: Path, unlabeled: Path | None = None,
        force: bool = False) -> Artifact:
    """Add exits to the BERT student ``source``, train them on ``data`` (and ``unlabeled`` texts), calibrate the
    threshold on val and write a ``student`` artifact whose forward exits early."""
    _check_losses(config)
    artifact = load_artifact(source, kind=("teacher", "student"))
    dataset = load_dataset(data)
    dataset.check_labels_of(artifact)
    student = load_classifier(artifact)
    if not isinstance(student, BertClassifier):
        raise UserError(f"its architecture is {artifact.manifest['architecture']['name']}; early exits go after the "
                        "layers of a BERT or TinyBERT: give one of those", path=source)
    if student.bert.config.num_hidden_layers < 2:
        raise UserError("has one layer, so no exit could come before its last; give a deeper BERT", path=source)
    if not dataset.texts("val"):
        raise UserError("the dataset has no val split to calibrate on; prepare it with one", path=data)
    device = resolve_device(config.device)
    thresholds = np.asarray(artifact.manifest["thresholds"])
    single_label = not dataset.multi_label
    model = EarlyExitBert({"base": artifact.manifest["architecture"], "threshold": NONE_LEAVE,
                           "thresholds": thresholds.tolist(), "single_label": single_label})
    model.base.load_state_dict(student.state_dict())
    model.to(device).eval()
    model.base.requires_grad_(False)
    tokenizer = load_tokenizer(artifact.file("tokenizer"))

    texts = list(dataset.texts("train")) + (read_texts(unlabeled) if unlabeled else [])
    cls_states, base_logits = (part.to(device) for part in _features(model, tokenizer, texts, device, "features"))
    gold = torch.from_numpy(dataset.targets("train", np.float32)).to(device)
    labelled = torch.arange(len(texts), device=device) < len(gold)
    gold = torch.cat([gold, gold.new_zeros(len(texts) - len(gold), gold.shape[1])])
    pos_weight = label_pos_weights(dataset.label_counts("train"), int(labelled.sum()), config.pos_weight).to(device)
    val_states, val_logits = (part.to(device) for part in _features(model, tokenizer, dataset.texts("val"), device,
                                                                     "val features"))
    val_gold = dataset.targets("val", np.uint8)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        index = index.to(device)
        batch = Batch(labelled=labelled[index], label_weights=pos_weight)
        losses = []
        for k, head in enumerate(model.exits):
            logits = head(cls_states[index, k])
            losses.append(config.losses.get("soft_kd", 0) * soft_target_kd(
                logits, base_logits[index], batch, config.temperature, multi_label=not single_label))
            losses.append(config.losses.get("hard_bce", 0) * gold_label_bce(logits, gold[index], batch))
        return sum(losses) / len(model.exits)

    def exits_val_micro_f1() -> float:
        with torch.no_grad():
            probs = torch.sigmoid(model.exit_logits(val_states, val_logits)[:-1]).cpu().numpy()
        return float(np.mean([split_metrics(p, dataset, "val", np.full(len(dataset.labels), 0.5))["micro_f1"]
                              for p in probs]))

    result = fit(model.exits, len(texts), batch_loss, exits_val_micro_f1, config.fit, "exits",
                 score_name="exits' mean val micro-F1")
    model.eval()

    record = {"keep": config.keep, "assurance": config.assurance, "confidence": confidence_kind(single_label),
              "leave_when": "confidence >= threshold"}
    for split in [split for split in ("val", "test") if dataset.texts(split)]:
        states, logits = (val_states, val_logits) if split == "val" else (
            part.to(device) for part in _features(model, tokenizer, dataset.texts(split), device, f"{split} features"))
        with torch.no_grad():
            exit_probs = torch.sigmoid(model.exit_logits(states, logits)).cpu().numpy()
        choices = exit_choices(exit_probs, thresholds, single_label)
        confidences = np.stack([confidence(probs, thresholds, single_label) for probs in exit_probs[:-1]])
        if split == "val":
            calibration = calibrate(confidences, choices, val_gold, config.keep, config.assurance)
            model.config["threshold"] = calibration["threshold"]
            record.update(threshold=calibration["threshold"], assured=calibration["assured"],
                          curve=calibration.pop("curve"))
        exits = leave_at(confidences, model.config["threshold"])
        record[split] = {"mean_layers": float(exits.mean() + 1), "exit_shares": exit_shares(exits, model.depth),
                         "exit_micro_f1": [split_metrics(probs, dataset, split, thresholds)["micro_f1"]
                                           for probs in exit_probs]}
    # scored through the forward itself, as eval, bench and the app run it (texts leaving early)
    metrics = {split: split_metrics(predict_probs(model, tokenizer, dataset.texts(split), device, description=split),
                                    dataset, split, thresholds)
               for split in ("val", "test") if dataset.texts(split)}
    for split, scores in metrics.items():
        record[split]["micro_f1"] = scores["micro_f1"]
    console.log(f"early exit: threshold {record['threshold']:.4f}; " + "; ".join(
        f"{split} micro-F1 {record[split]['micro_f1']:.4f} (all {model.depth} layers: "
        f"{record[split]['exit_micro_f1'][-1]:.4f}) with {record[split]['mean_layers']:.2f} layers on average"
        for split in metrics))
    record["training"] = {"losses": config.losses, "temperature": config.temperature, "config": asdict(config),
                          "texts": {"labelled": int(labelled.sum()), "unlabeled": int((~labelled).sum())}}
    extra = {"early_exit": record}
    if "distillation" in artifact.manifest:
        extra["distillation"] = artifact.manifest["distillation"]  # how the student was distilled: its teacher
    return write_classifier(out, "student", model.cpu(), tokenizer, dataset, [artifact, dataset.artifact],
                            thresholds, artifact.manifest.get("threshold_tuning", {}), metrics, config.fit, result,
                            extra, force)


def _check_losses(config: EarlyExitConfig) -> None:
    unknown = sorted(set(config.losses) - {"soft_kd", "hard_bce"})
    if unknown:
        raise UserError(f"exits learn from the last layer (soft_kd) and the gold labels (hard_bce), not "
                        f"{', '.join(unknown)}")
    if not any(config.losses.values()):
        raise UserError("give soft_kd or hard_bce a non-zero weight")
