"""The parity certificate: do the exported files, run in their real runtimes, classify like the model they came from?

N real validation texts go through the eager fp32 model and through each exported file (ExecuTorch's Python
runtime for ``.pte``, onnxruntime for ``.onnx``). Recorded per file: the largest |Δ probability|, top-label
agreement and agreement of the thresholded label sets (what the app shows). A file fails when its label-set
agreement is below ``min_agreement`` or its largest |Δ probability| above ``max_prob_diff``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobclf.train.classifier import predict_probs
from mobclf.train.metrics import agreement
from mobclf.train.thresholds import predict_labels


@dataclass
class Tolerance:
    min_agreement: float = 0.98  # of thresholded label sets, exported vs eager
    max_prob_diff: float = 0.2  # largest |Δ probability| over the texts and labels


def certify(eager_probs: np.ndarray, runner, tokenizer, texts: list[str], thresholds: np.ndarray,
            single_label: bool, tolerance: Tolerance, description: str) -> dict:
    """Compare one exported file (through its ``runner``) with the eager model's probabilities on ``texts``."""
    probs = predict_probs(runner, tokenizer, texts, description=description)
    ours, eager = (predict_labels(p, thresholds, single_label) for p in (probs, eager_probs))
    result = {"texts": len(texts),
              "max_abs_prob_difference": float(np.abs(probs - eager_probs).max()),
              "top_label_agreement": float((probs.argmax(1) == eager_probs.argmax(1)).mean()),
              "label_set_agreement": agreement(ours, eager)}
    result["passed"] = (result["label_set_agreement"] >= tolerance.min_agreement
                        and result["max_abs_prob_difference"] <= tolerance.max_prob_diff)
    return result
