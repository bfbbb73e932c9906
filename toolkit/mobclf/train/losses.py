"""Hard-label loss for multi-label classification: BCE with per-label positive weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mobclf.errors import UserError

POS_WEIGHT_SCHEMES = ("none", "inverse", "sqrt_inverse")


def label_pos_weights(
    label_counts: np.ndarray,
    n_examples: int,
    scheme: str = "sqrt_inverse",
    max_weight: float = 30.0,
) -> torch.Tensor:
    """Per-label positive weights for :func:`weighted_bce` from how often each label occurs.

    With ``n_pos`` positives of a label among ``n_examples`` and ``n_neg = n_examples - n_pos``:

    - ``"none"``: ``w = 1``
    - ``"inverse"``: ``w = n_neg / n_pos`` (the ``pos_weight`` convention of ``BCEWithLogitsLoss``:
      positives and negatives of the label then weigh the same in total)
    - ``"sqrt_inverse"``: ``w = sqrt(n_neg / n_pos)``, a milder version for long-tailed label sets

    then clipped to ``[1, max_weight]``; a label with no positives gets ``max_weight``.

        >>> label_pos_weights(np.array([50, 10, 0]), 100, scheme="inverse")
        tensor([ 1.,  9., 30.])
    """
    if scheme not in POS_WEIGHT_SCHEMES:
        raise UserError(f"unknown pos-weight scheme {scheme!r}; use one of {', '.join(POS_WEIGHT_SCHEMES)}")
    counts = np.asarray(label_counts, dtype=np.float64)
    if scheme == "none":
        return torch.ones(len(counts), dtype=torch.float32)
    ratio = (n_examples - counts) / np.maximum(counts, 1.0)
    if scheme == "sqrt_inverse":
        ratio = np.sqrt(np.maximum(ratio, 0.0))
    weights = np.where(counts > 0, np.clip(ratio, 1.0, max_weight), max_weight)
    return torch.as_tensor(weights, dtype=torch.float32)


def weighted_bce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    example_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean binary cross-entropy with logits over examples × labels, positives weighted per label.

    ``logits`` and ``targets`` are ``[B, L]``; ``pos_weight`` is ``[L]`` (see :func:`label_pos_weights`).
    ``example_mask`` ``[B]`` (bool) keeps only examples that have hard labels, e.g. to skip unlabeled
    transfer texts in a distillation batch; if it keeps none the loss is 0 (still attached to the graph).

        >>> weighted_bce(torch.zeros(1, 1), torch.ones(1, 1))  # -log(sigmoid(0)) = ln 2
        tensor(0.6931)
    """
    if pos_weight is not None:
        pos_weight = pos_weight.to(device=logits.device, dtype=logits.dtype)
    per_item = F.binary_cross_entropy_with_logits(
        logits, targets.to(logits.dtype), pos_weight=pos_weight, reduction="none"
    )
    if example_mask is not None:
        per_item = per_item[example_mask.to(device=logits.device, dtype=torch.bool)]
        if per_item.numel() == 0:
            return logits.sum() * 0.0
    return per_item.mean()
