"""Decision thresholds for multi-label outputs, tuned on validation probabilities, and the prediction rule."""

from __future__ import annotations

import numpy as np

from mobclf.train.metrics import ROWS_AT_ONCE, f1_from_counts, label_counts

OBJECTIVES = ("micro", "macro")
DEFAULT_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def _counts(probs: np.ndarray, targets: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """True positives, false positives, false negatives per grid threshold and label: three ``[G, L]``, counted a
    few thousand rows at a time."""
    tp, fp, fn = (np.zeros((len(grid), probs.shape[1]), dtype=np.int64) for _ in range(3))
    for start in range(0, len(probs), ROWS_AT_ONCE):
        truth, rows = targets[start:start + ROWS_AT_ONCE] != 0, probs[start:start + ROWS_AT_ONCE]
        for g, threshold in enumerate(grid):
            counts = label_counts(truth, rows >= threshold)
            tp[g] += counts[0]
            fp[g] += counts[1]
            fn[g] += counts[2]
    return tp, fp, fn


def tune_thresholds(
    probs: np.ndarray,
    targets: np.ndarray,
    objective: str = "micro",
    min_positives: int = 5,
    grid: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Per-label thresholds on ``probs`` ``[N, L]`` that maximise micro- or macro-F1 against ``targets``.

    First the best single threshold for all labels on ``grid`` (default 0.05, 0.10, ..., 0.95). Labels with
    fewer than ``min_positives`` positives keep it, since a threshold fitted to a handful of examples does not
    carry over. The others get their own: for ``"macro"`` the threshold with the best F1 for that label; for
    ``"micro"`` two passes of coordinate ascent, each label in turn moved to the threshold that most improves
    the overall micro-F1. A label only leaves the global threshold on a strict improvement. Scores are plain
    ``probs >= threshold`` F1 on the tuning data itself, so they are optimistic: report test metrics separately.

    Returns the thresholds ``[L]`` and ``{"objective", "global_threshold", "tuned_labels" (indices whose
    threshold differs from the global one), "score_global", "score_tuned"}``.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    probs, targets = np.asarray(probs), np.asarray(targets)  # compared with float64 thresholds: no float64 copy
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"probs {probs.shape} and targets {targets.shape} must both be [N, L]")
    grid = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    tp, fp, fn = _counts(probs, targets, grid)
    n_labels = probs.shape[1]
    labels = np.arange(n_labels)

    def score(idx: np.ndarray) -> float:
        """Objective with label ``l`` at grid index ``idx[l]``."""
        a, b, c = tp[idx, labels], fp[idx, labels], fn[idx, labels]
        return float(f1_from_counts(a.sum(), b.sum(), c.sum()) if objective == "micro"
                     else f1_from_counts(a, b, c).mean())

    global_scores = [score(np.full(n_labels, g)) for g in range(len(grid))]
    g0 = int(np.argmax(global_scores))
    idx = np.full(n_labels, g0)
    tunable = labels[tp[0] + fn[0] >= min_positives]  # positives per label

    if objective == "macro":
        f1 = f1_from_counts(tp, fp, fn)
        for label in tunable:
            best = int(np.argmax(f1[:, label]))
            if f1[best, label] > f1[g0, label]:
                idx[label] = best
    else:
        totals = np.array([tp[idx, labels].sum(), fp[idx, labels].sum(), fn[idx, labels].sum()])
        for _ in range(2):
            changed = False
            for label in tunable:
                rest = totals - np.array([tp[idx[label], label], fp[idx[label], label], fn[idx[label], label]])
                candidates = f1_from_counts(rest[0] + tp[:, label], rest[1] + fp[:, label], rest[2] + fn[:, label])
                best = int(np.argmax(candidates))
                if candidates[best] > candidates[idx[label]]:
                    idx[label] = best
                    totals = rest + np.array([tp[best, label], fp[best, label], fn[best, label]])
                    changed = True
            if not changed:
                break

    info = {
        "objective": objective,
        "global_threshold": float(grid[g0]),
        "tuned_labels": [int(label) for label in labels[idx != g0]],
        "score_global": global_scores[g0],
        "score_tuned": score(idx),
    }
    return grid[idx].astype(np.float64), info


def predict_labels(
    probs: np.ndarray,
    thresholds: np.ndarray | float,
    single_label: bool,
    ensure_one: bool = True,
) -> np.ndarray:
    """Multi-hot ``[N, L]`` uint8 predictions from probabilities ``[N, L]``.

    Single-label: the argmax, one-hot. Multi-label: every label with ``prob >= threshold``; with
    ``ensure_one`` a row where none passes gets its most probable label (a news item always has a topic).
    """
    probs = np.asarray(probs)
    if single_label:
        out = np.zeros(probs.shape, dtype=np.uint8)
        out[np.arange(len(probs)), probs.argmax(1)] = 1
        return out
    out = (probs >= np.asarray(thresholds)).view(np.uint8)  # bool as 0/1 bytes, no copy
    if ensure_one:
        empty = np.flatnonzero(out.sum(1) == 0)
        out[empty, probs[empty].argmax(1)] = 1
    return out
