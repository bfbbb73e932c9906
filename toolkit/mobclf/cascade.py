"""``mobclf cascade``: the fast model answers the texts it is sure of, the accurate model the rest (the
automotive-news study's hybrid deployment: TextCNN for simple articles, BERT for complex ones).

**Confidence** is how far the fast model's probabilities are from changing its decision:

- single-label (argmax): the margin between its two most probable labels, ``p(1) - p(2)``;
- multi-label (per-label thresholds): the distance of the label nearest its threshold, ``min_i |p_i - t_i|``.

Both are 0 exactly where the decision flips, so one threshold reads the same way for both kinds of data. The top
probability alone would call a headline certain with 0.48 against 0.47 for the next label, and for multi-label data
it would ignore every label but the top one, where an article's second label may sit on its threshold.

**Calibration** (on val): with the texts sorted by confidence, escalating the k least confident for k = 0..N gives
the cascade's micro-F1 at every escalation rate (the curve stored and plotted in the bundle). The rule escalates a
text when its confidence is below the threshold; the threshold is the one of the fewest escalations whose micro-F1
keeps ``keep`` (default 99.5%) of the accurate model's, on val and in ``assurance`` (default 90%) of bootstrap
resamples of val (:class:`Margin`): the first threshold that keeps it on val alone is the one val's noise favours
most, and keeps less on new texts. A cascade is calibrated separately for each runtime both bundles ship
(ExecuTorch, ONNX), on the probabilities that runtime gives.

The bundle holds both bundles unchanged (``fast/``, ``accurate/``: each with its own tokenizer, thresholds and
parity certificate) and ``cascade.json``, the rule: for each runtime the two model files, the confidence kind and
the threshold.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mobclf.artifacts import MANIFEST, Artifact, lineage, load_artifact, write_artifact
from mobclf.bench.variants import Answers, Predictor, Variant, open_model, variants_of
from mobclf.console import console
from mobclf.data.dataset import load_dataset
from mobclf.errors import UserError
from mobclf.models.early_exit import confidence_kind, decision_margin
from mobclf.stages import CascadeConfig
from mobclf.train.metrics import classification_metrics, f1_from_counts

RULE_FILE = "cascade.json"
PLOT_FILE = "calibration.png"
CURVE_POINTS = 200  # points of the stored calibration curve (the chosen one always among them)
RESAMPLES = 500  # bootstrap resamples of val that test a threshold's margin


def confidence(probs: np.ndarray, thresholds: np.ndarray, single_label: bool) -> np.ndarray:
    """How far each text's probabilities ``[N, L]`` are from changing the model's decision: the top-two margin
    (single-label), or the least distance of a label from its threshold (multi-label); ``[N]``, in float64. The
    early exits' rule (``models.early_exit.decision_margin``)."""
    as_float64 = (torch.as_tensor(np.asarray(values, dtype=np.float64)) for values in (probs, thresholds))
    return decision_margin(*as_float64, single_label).numpy()


def escalated(confidences: np.ndarray, threshold: float) -> np.ndarray:
    """The rule: a text goes to the accurate model when the fast model's confidence is below ``threshold``."""
    return np.asarray(confidences) < threshold


@dataclass
class Calibration:
    threshold: float
    escalation_rate: float
    micro_f1: float
    fast_micro_f1: float
    accurate_micro_f1: float
    assured: float  # the share of val resamples in which the threshold keeps ``keep``
    curve: list[tuple[float, float]]  # (escalation rate, micro-F1) at CURVE_POINTS points and the chosen one


def per_text_counts(choices: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per text: true positives, false positives, false negatives ``[N, 3]``."""
    choices, gold = choices.astype(bool), gold.astype(bool)
    return np.stack([(choices & gold).sum(1), (choices & ~gold).sum(1), (~choices & gold).sum(1)], axis=1)


class Margin:
    """The paired bootstrap (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 6): ``RESAMPLES``
    draws of the N val texts with replacement, each scoring a candidate rule and the reference model on the same
    texts. ``assured(totals)`` is the share of draws in which the rule keeps ``keep`` of the reference's micro-F1,
    from the rule's true/false positive and false negative counts in every draw (``weights @ per-text counts``)."""

    def __init__(self, reference_counts: np.ndarray, keep: float, seed: int = 0):
        n = len(reference_counts)
        self.weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / max(n, 1)), size=RESAMPLES) \
            .astype(np.float64)  # [RESAMPLES, N]: how often each text is drawn
        self.target = keep * f1_from_counts(*(self.weights @ reference_counts).T)

    def assured(self, totals: np.ndarray) -> float:
        return float(np.mean(f1_from_counts(*totals.T) >= self.target - 1e-12))


def calibrate(confidences: np.ndarray, fast: np.ndarray, accurate: np.ndarray, gold: np.ndarray,
              keep: float, assurance: float) -> Calibration:
    """The threshold of fewest escalations whose micro-F1 is at least ``keep`` × the accurate model's on val and in
    ``assurance`` of its resamples, from the fast model's ``confidences`` [N] and both models' multi-hot choices and
    the ``gold`` labels [N, L]."""
    order = np.argsort(confidences, kind="stable")
    sorted_confidences = np.asarray(confidences, dtype=np.float64)[order]
    fast_counts = per_text_counts(fast[order], gold[order])
    accurate_counts = per_text_counts(accurate[order], gold[order])
    # k escalated (the k least confident): counts = accurate's on the first k, fast's on the rest
    zero = np.zeros((1, 3))
    escalated_part = np.concatenate([zero, np.cumsum(accurate_counts, axis=0)])
    kept_part = np.concatenate([zero, np.cumsum(fast_counts[::-1], axis=0)])[::-1]
    tp, fp, fn = (escalated_part + kept_part).T
    f1 = f1_from_counts(tp, fp, fn)
    n = len(order)
    # a threshold can only fall between two different confidences: k is a tie boundary (or 0 or n)
    possible = np.concatenate([[True], sorted_confidences[1:] != sorted_confidences[:-1], [True]])
    margin = Margin(accurate_counts, keep)
    totals = margin.weights @ fast_counts  # in every resample, with none escalated
    for k in range(n + 1):
        if k:  # one more escalated: the k-th least confident text now counts the accurate model's answer
            totals += margin.weights[:, k - 1, None] * (accurate_counts[k - 1] - fast_counts[k - 1])
        if possible[k] and f1[k] >= keep * f1[n] - 1e-12 and (assured := margin.assured(totals)) >= assurance:
            break
    # escalating k texts: the threshold is the (k+1)-th confidence, or just above the largest for all of them
    threshold = float(sorted_confidences[k]) if k < n else math.nextafter(float(sorted_confidences[-1]), math.inf)
    shown = np.unique(np.concatenate([np.linspace(0, n, min(CURVE_POINTS, n + 1)).round().astype(int), [k]]))
    return Calibration(threshold, k / max(n, 1), float(f1[k]), float(f1[0]), float(f1[n]), assured,
                       [(float(i / max(n, 1)), float(f1[i])) for i in shown])


def _shared_runtimes(fast: Artifact, accurate: Artifact) -> dict[str, tuple[str, str]]:
    """runtime → (fast file, accurate file): the first file of each runtime both bundles ship."""
    def files(artifact: Artifact) -> dict[str, str]:
        found = {}
        for variant in variants_of(artifact):
            found.setdefault(variant.runtime, variant.file)
        return found

    fast_files, accurate_files = files(fast), files(accurate)
    shared = {runtime: (fast_files[runtime], accurate_files[runtime]) for runtime in fast_files
              if runtime in accurate_files}
    if not shared:
        raise UserError(f"the bundles share no runtime (fast: {', '.join(fast_files)}; accurate: "
                        f"{', '.join(accurate_files)}); export both for the same --target", path=accurate.path)
    return shared


def _copy_bundle(bundle: Artifact, into: Path) -> None:
    """The bundle's checksummed files and manifest, unchanged, under ``into``."""
    for name in [*bundle.manifest["files"], MANIFEST]:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.path / name, into / name)


def _plot(curves: dict[str, Calibration], keep: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for runtime, calibration in curves.items():
        rates, scores = zip(*calibration.curve)
        axes.plot([100 * rate for rate in rates], scores, label=runtime)
        axes.scatter([100 * calibration.escalation_rate], [calibration.micro_f1], zorder=3)
    first = next(iter(curves.values()))
    axes.axhline(keep * first.accurate_micro_f1, linestyle="--", color="grey",
                 label=f"{keep:.1%} of the accurate model")
    axes.set(xlabel="texts escalated to the accurate model (%)", ylabel="val micro-F1",
             title="cascade calibration (val)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@dataclass
class CascadePredictor:
    """A cascade bundle in one runtime, as an app uses it: the fast model answers every text, the accurate model
    those whose confidence is below the threshold (``answer``)."""

    name: str
    runtime: str
    fast: Predictor
    accurate: Predictor
    threshold: float

    @property
    def labels(self) -> list[str]:
        return self.fast.labels

    @property
    def description(self) -> str:
        return (f"cascade {self.name} ({self.runtime}: {self.fast.variant.name} → {self.accurate.variant.name} "
                f"below confidence {self.threshold:.4f})")

    def answer(self, texts: list[str], batch_size: int = 128, description: str | None = None) -> Answers:
        fast = self.fast.answer(texts, batch_size, description and f"{description}: fast")
        sent = escalated(confidence(fast.probs, self.fast.thresholds, self.fast.single_label), self.threshold)
        hard = [text for text, send in zip(texts, sent) if send]
        accurate = self.accurate.answer(hard, batch_size, description and f"{description}: accurate")
        probs, choices = fast.probs.copy(), fast.choices.copy()
        probs[sent], choices[sent] = accurate.probs, accurate.choices
        return Answers(probs, choices, sent)


def cascade_rules(artifact: Artifact) -> dict[str, dict]:
    """runtime → its rule (``fast`` and ``accurate`` files, ``threshold``, scores) of a cascade artifact."""
    return json.loads(artifact.file(artifact.manifest["cascade"]).read_text(encoding="utf-8"))["runtimes"]


def part_variants(artifact: Artifact) -> list[Variant]:
    """The model files a cascade's rules use, as ``bench`` variants named ``<cascade>/fast/<file>`` and
    ``<cascade>/accurate/<file>``."""
    files = {path for rule in cascade_rules(artifact).values() for path in (rule["fast"], rule["accurate"])}
    parts = []
    for folder in ("fast", "accurate"):
        for variant in variants_of(load_artifact(artifact.file(folder), kind="export")):
            if f"{folder}/{variant.file}" in files:
                parts.append(replace(variant, name=f"{artifact.path.name}/{folder}/{variant.file}"))
    return parts


def open_cascade(artifact: Artifact, runtime: str | None = None) -> CascadePredictor:
    """A cascade artifact's rule and models in ``runtime`` (default: the first the rule has)."""
    rule = cascade_rules(artifact)
    runtime = runtime or next(iter(rule))
    if runtime not in rule:
        raise UserError(f"the cascade has no {runtime!r} models; choose one of {', '.join(rule)}", path=artifact.path)
    models = {}
    for role in ("fast", "accurate"):
        folder, file = rule[runtime][role].split("/", 1)
        models[role] = open_model(load_artifact(artifact.file(folder), kind="export"), file)
    return CascadePredictor(artifact.path.name, runtime, models["fast"], models["accurate"],
                            rule[runtime]["threshold"])


def run(config: CascadeConfig, *, fast: Path, accurate: Path, data: Path, out: Path,
        force: bool = False) -> Artifact:
    """Calibrate the cascade of two export bundles on ``data``'s val split, score it on test (when there is one)
    and write the cascade bundle to ``out``."""
    fast_bundle, accurate_bundle = load_artifact(fast, kind="export"), load_artifact(accurate, kind="export")
    dataset = load_dataset(data)
    dataset.check_labels_of(fast_bundle, accurate_bundle)
    runtimes = _shared_runtimes(fast_bundle, accurate_bundle)
    splits = [split for split in ("val", "test") if dataset.texts(split)]
    if "val" not in splits:
        raise UserError("the dataset has no val split to calibrate on; prepare it with one", path=data)
    rule, calibrations = {}, {}
    for runtime, (fast_file, accurate_file) in runtimes.items():
        fast_model, accurate_model = open_model(fast_bundle, fast_file), open_model(accurate_bundle, accurate_file)
        scored = {}
        for split in splits:
            texts, gold = dataset.texts(split), dataset.targets(split, np.uint8)
            fast_probs = fast_model.probs(texts, description=f"{split}: fast {fast_file}")
            accurate_probs = accurate_model.probs(texts, description=f"{split}: accurate {accurate_file}")
            scored[split] = (confidence(fast_probs, fast_model.thresholds, fast_model.single_label),
                             fast_model.decide(fast_probs), accurate_model.decide(accurate_probs), gold)
        calibration = calibrate(*scored["val"], config.keep, config.assurance)
        calibrations[runtime] = calibration
        rule[runtime] = {"fast": f"fast/{fast_file}", "accurate": f"accurate/{accurate_file}",
                         "threshold": calibration.threshold,
                         "val": {"micro_f1": calibration.micro_f1, "escalation_rate": calibration.escalation_rate,
                                 "assured": calibration.assured, "fast_micro_f1": calibration.fast_micro_f1,
                                 "accurate_micro_f1": calibration.accurate_micro_f1},
                         "curve": calibration.curve}
        if "test" in scored:
            confidences, fast_choices, accurate_choices, gold = scored["test"]
            sent = escalated(confidences, calibration.threshold)
            choices = np.where(sent[:, None], accurate_choices, fast_choices)
            rule[runtime]["test"] = {name: classification_metrics(gold, chosen, dataset.labels)["micro_f1"]
                                     for name, chosen in (("micro_f1", choices), ("fast_micro_f1", fast_choices),
                                                          ("accurate_micro_f1", accurate_choices))}
            rule[runtime]["test"]["escalation_rate"] = float(sent.mean())
        tested = rule[runtime].get("test")
        console.log(f"cascade ({runtime}): threshold {calibration.threshold:.4f}; val micro-F1 "
                    f"{calibration.micro_f1:.4f} (the accurate model {calibration.accurate_micro_f1:.4f}) with "
                    f"{calibration.escalation_rate:.1%} escalated" + (
                        f"; test {tested['micro_f1']:.4f} with {tested['escalation_rate']:.1%} escalated"
                        if tested else ""))
    description = {"confidence": confidence_kind(not dataset.multi_label),
                   "escalate_when": "confidence < threshold", "keep": config.keep,
                   "assurance": config.assurance, "runtimes": rule}
    with write_artifact(out, kind="cascade", force=force) as bundle:
        _copy_bundle(fast_bundle, bundle.dir / "fast")
        _copy_bundle(accurate_bundle, bundle.dir / "accurate")
        (bundle.dir / RULE_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
        _plot(calibrations, config.keep, bundle.dir / PLOT_FILE)
        bundle.manifest.update({"cascade": RULE_FILE, "labels": dataset.labels, "multi_label": dataset.multi_label,
                                "lineage": lineage([fast_bundle, accurate_bundle, dataset.artifact])})
    return load_artifact(out)
