"""Losses against values worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mobclf.distill.losses import (
    LOSSES,
    Batch,
    Match,
    attention_mse,
    attention_transfer,
    fitnets_hint,
    get_loss,
    gold_label_bce,
    prediction_matches,
    register,
    soft_target_kd,
    total_loss,
)
from mobclf.errors import UserError
from mobclf.train.losses import label_pos_weights, weighted_bce

LN2 = math.log(2)


def test_pos_weights_schemes():
    counts, n = np.array([50, 10, 0, 99]), 100
    # n_neg / n_pos: 50/50 = 1, 90/10 = 9, no positives -> max, 1/99 -> clipped up to 1
    assert label_pos_weights(counts, n, "inverse").tolist() == [1.0, 9.0, 30.0, 1.0]
    assert label_pos_weights(counts, n, "sqrt_inverse").tolist() == [1.0, 3.0, 30.0, 1.0]
    assert label_pos_weights(counts, n, "none").tolist() == [1.0, 1.0, 1.0, 1.0]
    # 1000 negatives per positive, clipped down to max_weight
    assert label_pos_weights(np.array([1]), 1001, "inverse", max_weight=5.0).tolist() == [5.0]
    with pytest.raises(UserError, match="sqrt_inverse"):
        label_pos_weights(counts, n, "log")


def test_weighted_bce_by_hand():
    # -log(sigmoid(0)) = ln 2 for a positive; the same for a negative
    assert weighted_bce(torch.zeros(1, 1), torch.ones(1, 1)).item() == pytest.approx(LN2)
    # positive weighted 3: (3 ln 2 + ln 2) / 2 = 2 ln 2
    loss = weighted_bce(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), pos_weight=torch.tensor([3.0, 3.0]))
    assert loss.item() == pytest.approx(2 * LN2)


def test_weighted_bce_example_mask():
    logits = torch.tensor([[0.0], [2.0]], requires_grad=True)
    targets = torch.ones(2, 1)
    loss = weighted_bce(logits, targets, example_mask=torch.tensor([True, False]))
    assert loss.item() == pytest.approx(LN2)
    loss.backward()
    # d/dz BCE(z, 1) = sigmoid(z) - 1 = -0.5 at z = 0; the masked example gets no gradient
    assert logits.grad.tolist() == [[-0.5], [0.0]]

    none = weighted_bce(logits, targets, example_mask=torch.tensor([False, False]))
    assert none.item() == 0.0
    none.backward()  # still part of the graph


def test_soft_kd_single_label_by_hand():
    s = torch.zeros(1, 2)
    t = torch.tensor([[math.log(3), 0.0]])  # softmax -> [3/4, 1/4]
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert soft_target_kd(s, t, multi_label=False).item() == pytest.approx(kl, rel=1e-5)
    # T = 2 on doubled logits gives the same distributions, times T^2 = 4
    assert soft_target_kd(s, 2 * t, temperature=2.0, multi_label=False).item() == pytest.approx(4 * kl, rel=1e-5)
    same = torch.randn(3, 4)
    assert soft_target_kd(same, same.clone(), temperature=3.0, multi_label=False).item() == pytest.approx(0, abs=1e-6)


def test_soft_kd_multi_label_by_hand():
    # student logit 0: -(p ln .5 + (1 - p) ln .5) = ln 2 for any target p
    t = torch.tensor([[2 * math.log(3)]])  # sigmoid(t / 2) = 3/4
    assert soft_target_kd(torch.zeros(1, 1), t, temperature=2.0).item() == pytest.approx(4 * LN2)


def test_soft_kd_identical_logits_are_the_minimum():
    t = torch.randn(4, 5)
    s = t.clone().requires_grad_(True)
    at_teacher = soft_target_kd(s, t, temperature=2.0)
    at_teacher.backward()
    assert s.grad.abs().max().item() < 1e-6
    for _ in range(5):
        moved = soft_target_kd(t + 0.3 * torch.randn_like(t), t, temperature=2.0)
        assert moved.item() > at_teacher.item()


def test_soft_kd_gradient_reaches_student_only():
    s = torch.randn(2, 3, requires_grad=True)
    t = torch.randn(2, 3, requires_grad=True)
    soft_target_kd(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_hint_mse_by_hand():
    s = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
    t = torch.zeros(1, 2, 2)
    assert fitnets_hint(s, t).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    masked = fitnets_hint(s, t, Batch(mask=torch.tensor([[1, 0]])))
    assert masked.item() == pytest.approx((1 + 4) / 2)  # real position only, mean over its 2 features
    masked.backward()
    # d/ds (s^2 / 2) = s on the real position, 0 on padding
    assert s.grad.tolist() == [[[1.0, 2.0], [0.0, 0.0]]]
    # pooled [B, H] input
    assert fitnets_hint(torch.tensor([[1.0, 3.0]]), torch.zeros(1, 2)).item() == pytest.approx(5.0)
    assert fitnets_hint(s, t, Batch(mask=torch.zeros(1, 2))).item() == 0.0


def test_attention_transfer_by_hand():
    f = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0, 7.0]])
    mask = torch.tensor([[1, 1, 0]])
    # Q_s = [1, 1, (50 masked) 0] -> [1/√2, 1/√2, 0]; Q_t = [1, 0, (7 masked) 0] -> [1, 0, 0]
    # ||[1/√2 - 1, 1/√2, 0]||² = (1 - 1/√2)² + 1/2 = 2 - √2
    loss = attention_transfer(f, teacher, Batch(mask=mask))
    assert loss.item() == pytest.approx(math.sqrt(2 - math.sqrt(2)), rel=1e-5)
    loss.backward()
    assert f.grad[0, 2].tolist() == [0.0, 0.0]
    assert f.grad[0, :2].abs().sum() > 0


def test_attention_transfer_identical_maps_and_scale():
    f = torch.randn(2, 4, 3, requires_grad=True)
    q = f.detach().pow(2).sum(-1)
    # teacher attention matching the student's map up to scale costs nothing, with finite gradients
    loss = attention_transfer(f, 10 * q)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(f.grad).all()


def test_registry():
    assert set(LOSSES) >= {"soft_kd", "hard_bce", "hint_mse", "attention_transfer"}
    assert get_loss("soft_kd") is soft_target_kd
    assert get_loss("hard_bce") is gold_label_bce
    assert get_loss("hint_mse") is fitnets_hint
    assert get_loss("attention_transfer") is attention_transfer
    with pytest.raises(UserError, match="unknown distillation loss 'kd'.*attention_transfer.*soft_kd"):
        get_loss("kd")
    with pytest.raises(ValueError, match="already registered"):
        register("soft_kd")(lambda: None)


def test_attention_mse_matched_heads_by_hand():
    student = torch.zeros(1, 2, 2, 2)
    teacher = torch.zeros(1, 2, 2, 2)
    teacher[0, 0, 0, 0] = 2.0  # head 0, pair (0, 0): squared error 4
    teacher[0, 1, 1, 1] = 6.0  # head 1, pair (1, 1): padded, not counted with the mask
    # 2 heads × 4 pairs = 8 entries: (4 + 36) / 8 = 5
    assert attention_mse(student, teacher).item() == pytest.approx(5.0)
    # mask [1, 0]: only pair (0, 0) of each head counts: (4 + 0) / 2 = 2
    assert attention_mse(student, teacher, Batch(mask=torch.tensor([[1, 0]]))).item() == pytest.approx(2.0)


def test_attention_mse_averages_heads_when_counts_differ():
    student = torch.zeros(1, 1, 1, 1)
    teacher = torch.tensor([1.0, 3.0, 5.0, 7.0]).reshape(1, 4, 1, 1)  # head mean 4
    assert attention_mse(student, teacher).item() == pytest.approx(16.0)
    assert attention_mse(student.requires_grad_(), teacher.requires_grad_()).grad_fn is not None


def test_tinybert_layer_losses_are_the_fitnets_regression():
    assert get_loss("embedding_mse") is fitnets_hint and get_loss("hidden_mse") is fitnets_hint


def test_gold_label_bce_reads_label_weights_and_labelled_texts_from_the_batch():
    logits, gold = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    batch = Batch(labelled=torch.tensor([True, False]), label_weights=torch.tensor([3.0, 3.0]))
    # the unlabelled second text is left out; the first: (3 ln 2 + ln 2) / 2 = 2 ln 2, as weighted_bce by hand
    assert gold_label_bce(logits, gold, batch).item() == pytest.approx(2 * LN2)
    assert gold_label_bce(logits, gold, batch).item() == pytest.approx(
        weighted_bce(logits, gold, torch.tensor([3.0, 3.0]), torch.tensor([True, False])).item())


def test_total_loss_sums_weighted_matches_through_their_projections():
    projections = torch.nn.ModuleDict({"widen": torch.nn.Linear(1, 1, bias=False)})
    projections["widen"].weight.data.fill_(2.0)
    student = {"logits": torch.zeros(1, 1), "hidden.1": torch.ones(1, 1, 1)}
    teacher = {"labels": torch.ones(1, 1), "hidden.2": torch.zeros(1, 1, 1), "hidden.3": torch.full((1, 1, 1), 2.0)}
    matches = [Match("hard_bce", "logits", "labels", weight=2.0),               # 2 · ln 2
               Match("hidden_mse", "hidden.1", "hidden.2", 0.5, "widen"),      # 0.5 · (2·1 − 0)² = 2
               Match("hidden_mse", "hidden.1", "hidden.3", 0.5, "widen")]      # 0.5 · (2 − 2)² = 0
    assert total_loss(matches, student, teacher, Batch(), projections).item() == pytest.approx(2 * LN2 + 2)
    with pytest.raises(UserError, match="unknown distillation loss 'l1'"):
        total_loss([Match("l1", "logits", "labels")], student, teacher, Batch())


def test_prediction_matches_are_data_with_their_options():
    matches = prediction_matches({"soft_kd": 0.7, "hard_bce": 0.3, "hint_mse": 1.0}, temperature=4.0,
                                 multi_label=False)
    assert matches == [Match("soft_kd", "logits", "logits", 0.7, options={"temperature": 4.0, "multi_label": False}),
                       Match("hard_bce", "logits", "labels", 0.3)]
    s, t = torch.zeros(1, 2), torch.tensor([[2 * math.log(3), 0.0]])
    # the options reach the loss: T = 4 and single-label give soft_target_kd's value at those settings
    assert total_loss(matches[:1], {"logits": s}, {"logits": t}, Batch()).item() == pytest.approx(
        0.7 * soft_target_kd(s, t, temperature=4.0, multi_label=False).item())


def test_one_match_per_mapped_layer_at_a_share_of_the_weight_is_the_mean_over_layers():
    """TinyBERT's recipe declares hidden_mse and attention_mse once per mapped layer, each at weight / layers: the
    same value as one loss over the layers stacked along the batch (what it computed before matches were data)."""
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    ours = {f"hidden.{n}": torch.randn(2, 3, 4) for n in (1, 2)} | {f"attention.{n}": torch.randn(2, 2, 3, 3)
                                                                     for n in (1, 2)}
    theirs = {f"hidden.{n}": torch.randn(2, 3, 4) for n in (2, 4)} | {f"attention.{n}": torch.randn(2, 4, 3, 3)
                                                                      for n in (2, 4)}
    pairs = [(1, 2), (2, 4)]
    for loss, output in (("hidden_mse", "hidden"), ("attention_mse", "attention")):
        matches = [Match(loss, f"{output}.{s}", f"{output}.{t}", 3.0 / len(pairs)) for s, t in pairs]
        stacked = get_loss(loss)(torch.cat([ours[f"{output}.{s}"] for s, _ in pairs]),
                                 torch.cat([theirs[f"{output}.{t}"] for _, t in pairs]), Batch(mask=mask.repeat(2, 1)))
        assert total_loss(matches, ours, theirs, Batch(mask=mask)).item() == pytest.approx(3.0 * stacked.item())


class _CachedLogits:
    """A teacher's cached outputs, as ``TeacherOutputs.rows`` gives them."""

    def __init__(self, logits):
        self.logits = torch.tensor(logits)

    def rows(self, name, index):
        return self.logits[index]


@pytest.mark.parametrize("single_label", [False, True])
def test_soft_targets_of_several_teachers_are_their_weighted_probabilities_per_label(single_label):
    from mobclf.distill.teachers import SoftTargets, Teacher, _bert_teacher, teacher_weights

    class Artifact:
        path, sha256 = Path("teacher"), "0" * 64

    bert = _CachedLogits([[0.0, math.log(3)]])  # sigmoid: 0.5, 0.75; softmax: 0.25, 0.75
    tfidf = torch.tensor([[0.9, 0.1]])
    weights = teacher_weights([3, 1], others=0, tfidf=True)
    assert weights == [0.75, 0.25]
    teachers = [_bert_teacher(bert, Artifact(), single_label), Teacher(lambda index: tfidf[index], {})]
    targets = SoftTargets(bert, teachers, weights, single_label)
    logits = targets.logits(torch.tensor([0]))
    combined = [0.75 * 0.25 + 0.25 * 0.9, 0.75 * 0.75 + 0.25 * 0.1] if single_label else \
        [0.75 * 0.5 + 0.25 * 0.9, 0.75 * 0.75 + 0.25 * 0.1]
    expected = [math.log(p) if single_label else math.log(p / (1 - p)) for p in combined]
    torch.testing.assert_close(logits, torch.tensor([expected]))
    assert [record["weight"] for record in targets.records] == [0.75, 0.25]
    # one teacher: its own logits, untouched
    alone = SoftTargets(bert, [_bert_teacher(bert, Artifact(), single_label)], [1.0], single_label)
    assert torch.equal(alone.logits(torch.tensor([0])), bert.logits)
    with pytest.raises(UserError, match=r"needs 3 weights.*each --also-teacher, the TF-IDF teacher\); got 1, 1$"):
        teacher_weights([1, 1], others=1, tfidf=True)


def test_the_tfidf_teachers_probabilities_are_calibrated_by_one_temperature():
    """Temperature scaling (Guo et al. 2017) of flat probabilities: p^(1/T) renormalised for single-label data,
    sigmoid(logit(p) / T) per label otherwise, with T of least cross-entropy on val."""
    from mobclf.distill.teachers import _scaled, _temperature

    np.testing.assert_allclose(_scaled(np.array([[0.25, 0.75]]), 0.5, single_label=True), [[0.1, 0.9]], rtol=1e-5)
    sharpened = 1 / (1 + np.exp(-2 * np.log(np.array([9.0, 0.25]))))
    np.testing.assert_allclose(_scaled(np.array([[0.9, 0.2]]), 0.5, single_label=False), [sharpened], rtol=1e-5)
    # 0.6 for the label that is right 9 times in 10: the best T gives it 0.9, (0.6 / 0.4)^(1/T) = 9
    probabilities = np.tile([0.4, 0.6], (80, 1))
    targets = np.zeros((80, 2), np.uint8)
    targets[:72, 1] = targets[72:, 0] = 1
    assert _temperature(probabilities, targets, single_label=True) == pytest.approx(math.log(1.5) / math.log(9),
                                                                                    rel=0.12)
