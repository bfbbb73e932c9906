"""Threshold tuning, the prediction rule and metrics on cases checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mobclf.train.metrics import agreement, classification_metrics
from mobclf.train.thresholds import predict_labels, tune_thresholds


def separable_case():
    """Label 0: positives at 0.3, negatives at 0.1. Label 1: positives at 0.9, negatives at 0.7.

    No single threshold separates both; per label, any threshold in (0.1, 0.3] and (0.7, 0.9] is perfect.
    """
    pos0 = np.arange(10) < 5
    pos1 = np.arange(10) % 2 == 0
    probs = np.stack([np.where(pos0, 0.3, 0.1), np.where(pos1, 0.9, 0.7)], axis=1)
    return probs, np.stack([pos0, pos1], axis=1).astype(int)


def test_tune_micro_finds_per_label_thresholds():
    probs, targets = separable_case()
    thresholds, info = tune_thresholds(probs, targets, objective="micro")
    # global: t in (0.1, 0.3] -> tp 10, fp 5, fn 0 -> micro-F1 20/25 = 0.8 (beats 0.5 and 2/3 elsewhere);
    # the lowest such grid point is 0.15. Label 1 then moves to the first perfect point, 0.75.
    assert thresholds.tolist() == pytest.approx([0.15, 0.75])
    assert info["global_threshold"] == pytest.approx(0.15)
    assert info["tuned_labels"] == [1]
    assert info["score_global"] == pytest.approx(0.8)
    assert info["score_tuned"] == pytest.approx(1.0)


def test_tune_macro_finds_per_label_thresholds():
    probs, targets = separable_case()
    thresholds, info = tune_thresholds(probs, targets, objective="macro")
    # global 0.15: label 0 perfect (F1 1), label 1 all predicted (F1 10/15) -> (1 + 2/3) / 2
    assert info["score_global"] == pytest.approx(5 / 6)
    assert thresholds.tolist() == pytest.approx([0.15, 0.75])
    assert info["score_tuned"] == pytest.approx(1.0)


def test_rare_labels_keep_the_global_threshold():
    probs, targets = separable_case()
    thresholds, info = tune_thresholds(probs, targets, min_positives=6)  # each label has 5 positives
    assert thresholds.tolist() == pytest.approx([0.15, 0.15])
    assert info["tuned_labels"] == []
    assert info["score_tuned"] == info["score_global"]


@pytest.mark.parametrize("objective", ["micro", "macro"])
def test_tuning_never_lowers_the_objective(objective):
    rng = np.random.default_rng(0)
    targets = (rng.random((200, 6)) < [0.5, 0.3, 0.1, 0.05, 0.2, 0.02]).astype(int)
    probs = np.clip(0.35 * targets + rng.random(targets.shape) * 0.6, 0, 1)
    thresholds, info = tune_thresholds(probs, targets, objective=objective)
    assert thresholds.shape == (6,)
    assert info["score_tuned"] >= info["score_global"]
    json.dumps(info)


def test_tune_rejects_bad_input():
    with pytest.raises(ValueError, match="objective"):
        tune_thresholds(np.zeros((2, 2)), np.zeros((2, 2)), objective="weighted")
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        tune_thresholds(np.zeros((2, 2)), np.zeros((2, 3)))


def test_predict_labels():
    probs = np.array([[0.2, 0.7, 0.1], [0.4, 0.35, 0.25], [0.1, 0.2, 0.05]])
    assert predict_labels(probs, 0.3, single_label=True).tolist() == [[0, 1, 0], [1, 0, 0], [0, 1, 0]]
    assert predict_labels(probs, 0.3, single_label=False).tolist() == [[0, 1, 0], [1, 1, 0], [0, 1, 0]]
    assert predict_labels(probs, 0.3, single_label=False, ensure_one=False).tolist() == [
        [0, 1, 0],
        [1, 1, 0],
        [0, 0, 0],
    ]
    per_label = np.array([0.5, 0.3, 0.05])
    assert predict_labels(probs, per_label, single_label=False).tolist() == [[0, 1, 1], [0, 1, 1], [0, 0, 1]]


def test_classification_metrics_by_hand():
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    preds = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 1]])
    m = classification_metrics(targets, preds, ["a", "b", "c"])
    # a: tp 2 fp 1 fn 0 -> P 2/3 R 1 F1 0.8; b: tp 1 fp 0 fn 1 -> P 1 R 1/2 F1 2/3; c: perfect
    assert m["per_label"] == [
        {"label": "a", "precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2},
        {"label": "b", "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2},
        {"label": "c", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    ]
    # micro: tp 4 fp 1 fn 1
    assert m["micro_precision"] == pytest.approx(0.8)
    assert m["micro_recall"] == pytest.approx(0.8)
    assert m["micro_f1"] == pytest.approx(0.8)
    assert m["macro_precision"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1) / 3)
    assert m["subset_accuracy"] == 0.5  # rows 0 and 3 exactly right
    assert m["hamming_loss"] == pytest.approx(2 / 12)  # two wrong cells out of 12
    assert m["support"] == 4
    assert json.loads(json.dumps(m)) == m


@pytest.mark.parametrize("seed", range(4))
def test_classification_metrics_equal_sklearns_counted_in_pieces(seed, monkeypatch):
    """Counted 7 rows at a time (the last piece shorter), with labels never expected or never predicted, the scores
    are sklearn's to the last bit that matters; so are thresholds tuned in pieces against tuning in one."""
    from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

    from mobclf.train import metrics

    rng = np.random.default_rng(seed)
    targets = (rng.random((40, 9)) < [0.5, 0.3, 0.1, 0.05, 0.2, 0.02, 0.0, 0.4, 0.1]).astype(np.uint8)
    probs = np.clip(0.3 * targets + rng.random(targets.shape) * 0.7, 0, 1).astype(np.float32)
    predictions = predict_labels(probs, 0.5, single_label=False)
    predictions[:, 8] = 0  # a label nothing predicts
    whole = classification_metrics(targets, predictions, list("abcdefghi"))
    tuned_whole = tune_thresholds(probs, targets)
    monkeypatch.setattr(metrics, "ROWS_AT_ONCE", 7)
    monkeypatch.setattr("mobclf.train.thresholds.ROWS_AT_ONCE", 7)
    m = classification_metrics(targets, predictions, list("abcdefghi"))
    assert m == whole
    tuned = tune_thresholds(probs, targets)
    assert tuned[0].tolist() == tuned_whole[0].tolist() and tuned[1] == tuned_whole[1]
    for average in ("micro", "macro"):
        expected = precision_recall_fscore_support(targets, predictions, average=average, zero_division=0)[:3]
        assert [m[f"{average}_{name}"] for name in ("precision", "recall", "f1")] == pytest.approx(expected, abs=1e-12)
    per_label = precision_recall_fscore_support(targets, predictions, average=None, zero_division=0)
    for row, *expected in zip(m["per_label"], *per_label):
        assert [row["precision"], row["recall"], row["f1"], row["support"]] == pytest.approx(expected, abs=1e-12)
    assert m["subset_accuracy"] == accuracy_score(targets, predictions)
    assert m["hamming_loss"] == pytest.approx(hamming_loss(targets, predictions), abs=1e-12)


def test_single_label_subset_accuracy_is_accuracy():
    eye = np.eye(3, dtype=int)
    m = classification_metrics(eye[[0, 1, 2, 1]], eye[[0, 2, 2, 1]], ["x", "y", "z"])
    assert m["subset_accuracy"] == 0.75
    assert m["micro_f1"] == pytest.approx(0.75)


def test_metrics_reject_mismatched_names():
    with pytest.raises(ValueError, match="2 label names"):
        classification_metrics(np.eye(3), np.eye(3), ["a", "b"])


def test_agreement():
    a = np.array([[1, 0], [0, 1], [1, 1]])
    b = np.array([[1, 0], [1, 1], [1, 1]])
    assert agreement(a, b) == pytest.approx(2 / 3)
    assert agreement(np.array([0, 1, 2]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        agreement(a, b[:2])
