"""The parity certificate: do the exported files, run in their real runtimes, classify like the model they came from?

N real validation texts go through the eager fp32 model and through each exported file (ExecuTorch's Python
runtime for ``.pte``, onnxruntime for ``.onnx``). Recorded per file: the largest |Δ probability|, top-label
agreement and agreement of the thresholded label sets (what the app shows). A file fails when its label-set
agreement is below ``min_agreement`` or its largest |Δ probability| above ``max_prob_diff``.

``mobclf quantize`` runs the same check on the same texts as ``mobclf export`` will (``parity_sample``), so an INT8
file that export would refuse is refused when it is made, not stages later (``parity_sample``).
"""

from __future__ import annotations


from pathlib import Path

import numpy as np

from mobclf.console import console
from mobclf.errors import UserError
from mobclf.stages import PARITY_SEED, PARITY_TEXTS, ParityCheck, Tolerance
from mobclf.train.classifier import predict_probs
from mobclf.train.metrics import agreement
from mobclf.train.thresholds import predict_labels


def parity_sample(texts: list[str], count: int = PARITY_TEXTS, seed: int = PARITY_SEED) -> list[str]:
    """The validation texts a parity check runs: ``count`` of ``texts`` drawn with ``seed``, in their order."""
    chosen = np.random.default_rng(seed).choice(len(texts), min(count, len(texts)), replace=False)
    return [texts[i] for i in sorted(chosen)]


def enforce(name: str, result: dict, check: ParityCheck, advice: str, path: Path | None = None,
            context: str = "") -> None:
    """Stop, in one line with ``advice``, when the certificate ``result`` of the file ``name`` failed; with
    ``check.accept_failure`` say instead that it is written anyway, marked as failed."""
    if result["passed"]:
        return
    tolerance = check.tolerance
    message = (f"{name} disagrees with the fp32 model on {result['texts']} val texts: label-set agreement "
               f"{result['label_set_agreement']:.4f} (needs ≥ {tolerance.min_agreement:g}), max |Δprob| "
               f"{result['max_abs_prob_difference']:.3g} (needs ≤ {tolerance.max_prob_diff:g}){context}")
    if not check.accept_failure:
        raise UserError(f"{message}; nothing was written: {advice}", path=path)
    console.log(f"[yellow]{message}; written anyway (--accept-parity-failure), marked as failed")


def certify(eager_probs: np.ndarray, runner, tokenizer, texts: list[str], thresholds: np.ndarray,
            single_label: bool, tolerance: Tolerance, description: str) -> dict:
    """Compare one exported file (through its ``runner``) with the eager model's probabilities on ``texts``."""
    return compare(predict_probs(runner, tokenizer, texts, description=description), eager_probs, thresholds,
                   single_label, tolerance)


def compare(probs: np.ndarray, eager_probs: np.ndarray, thresholds: np.ndarray, single_label: bool,
            tolerance: Tolerance) -> dict:
    """``certify``'s verdict on an exported file's probabilities against the eager model's, for the same texts."""
    ours, eager = (predict_labels(p, thresholds, single_label) for p in (probs, eager_probs))
    result = {"texts": len(probs),
              "max_abs_prob_difference": float(np.abs(probs - eager_probs).max()),
              "top_label_agreement": float((probs.argmax(1) == eager_probs.argmax(1)).mean()),
              "label_set_agreement": agreement(ours, eager)}
    result["passed"] = (result["label_set_agreement"] >= tolerance.min_agreement
                        and result["max_abs_prob_difference"] <= tolerance.max_prob_diff)
    return result
