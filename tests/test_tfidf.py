from __future__ import annotations

import random

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mobclf.models.tfidf import GRIDS, fit_tfidf_baseline, tune_tfidf_baselines

ZH_TOPICS = {
    0: ("球队", "比赛", "冠军", "进球", "主场"),
    1: ("股市", "基金", "利率", "银行", "上涨"),
    2: ("芯片", "手机", "软件", "5G", "AI"),
}
EN_TOPICS = {
    0: ("grain", "wheat", "harvest", "corn"),
    1: ("oil", "crude", "barrel", "opec"),
    2: ("bank", "rate", "loan", "interest"),
}


def _texts(topics: dict, label_sets: list[tuple[int, ...]], joiner: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    filler = ("今天", "消息", "记者") if joiner == "" else ("the", "news", "said")
    return [joiner.join(rng.choice(topics[label]) for label in labels for _ in range(2)) + joiner + rng.choice(filler)
            for labels in label_sets]


def _multi_hot(label_sets: list[tuple[int, ...]], num_labels: int) -> np.ndarray:
    targets = np.zeros((len(label_sets), num_labels), dtype=np.int64)
    for row, labels in enumerate(label_sets):
        targets[row, list(labels)] = 1
    return targets


def test_zh_single_label_learns_and_has_the_right_shapes():
    rng = random.Random(0)
    label_sets = [(rng.randrange(3),) for _ in range(90)]
    texts = _texts(ZH_TOPICS, label_sets, "", seed=1)
    baseline = fit_tfidf_baseline(texts[:60], _multi_hot(label_sets[:60], 3), language="zh", multi_label=False)

    probabilities = baseline.predict_proba(texts[60:])
    predictions = baseline.predict(texts[60:])
    assert probabilities.shape == predictions.shape == (30, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (predictions.sum(axis=1) == 1).all()
    accuracy = (predictions.argmax(axis=1) == _multi_hot(label_sets[60:], 3).argmax(axis=1)).mean()
    assert accuracy > 0.8
    assert baseline.params > 0 and baseline.size_bytes > 0


def test_en_multi_label_learns_and_keeps_labels_without_positives_at_zero():
    rng = random.Random(0)
    label_sets = [tuple(sorted(rng.sample(range(3), rng.choice((1, 2))))) for _ in range(120)]
    texts = _texts(EN_TOPICS, label_sets, " ", seed=2)
    targets = np.concatenate([_multi_hot(label_sets, 3), np.zeros((120, 1), dtype=np.int64)], axis=1)
    baseline = fit_tfidf_baseline(texts[:90], targets[:90], language="en", multi_label=True)

    probabilities = baseline.predict_proba(texts[90:])
    predictions = baseline.predict(texts[90:])
    assert probabilities.shape == predictions.shape == (30, 4)
    assert (probabilities[:, 3] == 0).all() and (predictions[:, 3] == 0).all()
    true_positives = (predictions & targets[90:]).sum()
    micro_f1 = 2 * true_positives / (predictions.sum() + targets[90:].sum())
    assert micro_f1 > 0.8
    assert baseline.params == 3 * (baseline.pipeline.named_steps["tfidf"].idf_.size + 1)


def test_multi_label_with_a_single_learnable_label():
    texts = ["oil crude price", "wheat grain", "oil barrel", "corn harvest"]
    targets = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    baseline = fit_tfidf_baseline(texts, targets, language="en", multi_label=True)
    np.testing.assert_array_equal(baseline.predict(texts), targets)


@pytest.mark.parametrize("family", ["svm", "nb"])
def test_the_linear_svm_and_naive_bayes_learn_single_and_multi_label(family):
    rng = random.Random(0)
    single = [(rng.randrange(3),) for _ in range(90)]
    multi = [tuple(sorted(rng.sample(range(3), rng.choice((1, 2))))) for _ in range(120)]
    for label_sets, topics, joiner, multi_label in ((single, ZH_TOPICS, "", False), (multi, EN_TOPICS, " ", True)):
        texts, targets = _texts(topics, label_sets, joiner, seed=3), _multi_hot(label_sets, 3)
        cut = len(texts) * 3 // 4
        baseline = fit_tfidf_baseline(texts[:cut], targets[:cut], language="zh" if joiner == "" else "en",
                                      multi_label=multi_label, family=family)
        predictions = baseline.predict(texts[cut:])
        assert predictions.shape == targets[cut:].shape and predictions.dtype == np.int64
        assert multi_label or (predictions.sum(axis=1) == 1).all()
        assert f1_score(targets[cut:], predictions, average="micro") > 0.8
        assert baseline.params > 0 and baseline.size_bytes > 0


def test_tuning_keeps_each_familys_setting_with_the_best_val_micro_f1():
    rng = random.Random(0)
    label_sets = [(rng.randrange(3),) for _ in range(150)]
    texts, targets = _texts(ZH_TOPICS, label_sets, "", seed=4), _multi_hot(label_sets, 3)
    noise = random.Random(5)  # val: the topic's word among two random topics' (the settings score differently)
    texts[100:] = [noise.choice(ZH_TOPICS[labels[0]]) + noise.choice(ZH_TOPICS[noise.randrange(3)])
                   + noise.choice(ZH_TOPICS[noise.randrange(3)]) for labels in label_sets[100:]]
    tuned = tune_tfidf_baselines(texts[:100], targets[:100], texts[100:], targets[100:], language="zh",
                                 multi_label=False)
    assert [one.name for one in tuned] == ["tfidf-lr", "tfidf-svm", "tfidf-nb"]
    for one in tuned:
        [(key, values)] = GRIDS[one.family].items()
        scores = [f1_score(targets[100:], fit_tfidf_baseline(texts[:100], targets[:100], language="zh",
                                                             multi_label=False, family=one.family,
                                                             **{key: value}).predict(texts[100:]), average="micro")
                  for value in values]
        assert one.setting == {key: values[scores.index(max(scores))]} and one.tried == values
        assert one.val_micro_f1 == round(max(scores), 4)
