"""TF-IDF n-gram baselines every neural model has to beat: logistic regression, a linear SVM and complement naive
Bayes (Rennie et al. 2003, "Tackling the Poor Assumptions of Naive Bayes Text Classifiers"), from scikit-learn.

Chinese text uses character 1–2-grams, English word 1–2-grams. Single-label data gets one multi-class classifier
over the argmax labels; multi-label data gets one binary classifier per label (logistic regression with liblinear:
same scores as lbfgs on Reuters, five times faster). Decisions are the classifiers' own (argmax, or the positive
side of each label's boundary, i.e. probability >= 0.5 for logistic regression), as in the reference figures of the
data README. ``tune_tfidf_baselines`` chooses each family's C or alpha on val, the vectorizer fitted once.

    baseline = fit_tfidf_baseline(texts, targets, language="zh", multi_label=False, family="svm", C=1.0)
    predicted = baseline.predict(test_texts)  # multi-hot [N, L]
    tuned = tune_tfidf_baselines(texts, targets, val_texts, val_targets, language="zh", multi_label=False)
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

Language = Literal["zh", "en"]
Family = Literal["lr", "svm", "nb"]
MAX_ITER = 1000
GRIDS: dict[str, dict[str, tuple[float, ...]]] = {  # what tune_tfidf_baselines tries, per family
    "lr": {"C": (1.0, 10.0, 100.0)}, "svm": {"C": (0.1, 1.0, 10.0)}, "nb": {"alpha": (0.01, 0.1, 1.0)}}


@dataclass
class TfidfBaseline:
    """A fitted TF-IDF + classifier pipeline that answers in the toolkit's [N, L] label layout.

    ``fitted_columns`` are the label columns the classifier learned, in the order of its outputs; every other
    column had a single value in training (e.g. no positive example) and is predicted as ``constant_columns``.
    """

    pipeline: Pipeline
    num_labels: int
    multi_label: bool
    fitted_columns: np.ndarray
    constant_columns: np.ndarray

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of each label, float32 [N, L] (rows sum to 1 for single-label); not for the linear SVM."""
        probabilities = np.tile(self.constant_columns, (len(texts), 1)).astype(np.float32)
        if len(self.fitted_columns):
            fitted = self.pipeline.predict_proba(list(texts))
            # With a single fitted label, one-vs-rest answers [P(0), P(1)]; the last columns are always the labels.
            probabilities[:, self.fitted_columns] = fitted[:, -len(self.fitted_columns):]
        return probabilities

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Multi-hot int64 decisions [N, L]: the classifier's own (argmax, or each label's positive side)."""
        decisions = np.tile(self.constant_columns, (len(texts), 1)).astype(np.int64)
        if len(self.fitted_columns):
            predicted = np.asarray(self.pipeline.predict(list(texts)))
            if self.multi_label:
                decisions[:, self.fitted_columns] = predicted.reshape(len(texts), -1)
            else:
                decisions[np.arange(len(texts)), predicted] = 1
        return decisions

    @property
    def params(self) -> int:
        """Number of learned coefficients and intercepts (naive Bayes: its feature log-probabilities)."""
        if not len(self.fitted_columns):
            return 0
        classifier = self.pipeline.named_steps["classifier"]
        estimators = classifier.estimators_ if self.multi_label else [classifier]
        return sum(int(e.coef_.size + e.intercept_.size) if hasattr(e, "coef_") else
                   int(e.feature_log_prob_.size + e.class_log_prior_.size) for e in estimators)

    @property
    def size_bytes(self) -> int:
        """Size of the pickled pipeline (vocabulary, idf and weights), measured in memory only."""
        return len(pickle.dumps(self.pipeline, protocol=pickle.HIGHEST_PROTOCOL))


@dataclass
class TunedBaseline:
    """One family's baseline with the setting (C or alpha) that scored best on val of those ``tried``, and that
    score."""

    family: str
    setting: dict[str, float]
    tried: tuple[float, ...]
    val_micro_f1: float
    baseline: TfidfBaseline

    @property
    def name(self) -> str:
        return f"tfidf-{self.family}"


def _vectorizer(language: Language) -> TfidfVectorizer:
    if language == "zh":
        return TfidfVectorizer(analyzer="char", ngram_range=(1, 2))
    if language == "en":
        return TfidfVectorizer(analyzer="word", ngram_range=(1, 2))
    raise ValueError(f"language must be 'zh' or 'en', got {language!r}")


def _classifier(family: Family, multi_label: bool, settings: dict):
    if family == "lr":
        if multi_label:
            return OneVsRestClassifier(LogisticRegression(solver="liblinear", max_iter=MAX_ITER, **settings))
        return LogisticRegression(max_iter=MAX_ITER, **settings)
    estimator = {"svm": LinearSVC, "nb": ComplementNB}[family](**settings)
    return OneVsRestClassifier(estimator) if multi_label else estimator


def _label_layout(targets: np.ndarray, multi_label: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fitted columns, constant columns, what the classifier fits) for multi-hot targets [N, L]."""
    constant_columns = np.zeros(targets.shape[1], dtype=np.float32)
    if multi_label:
        varies = targets.min(axis=0) != targets.max(axis=0)
        constant_columns[~varies] = targets[0, ~varies]
        return np.flatnonzero(varies), constant_columns, targets[:, varies]
    fit_targets = targets.argmax(axis=1)
    fitted_columns = np.unique(fit_targets)
    if len(fitted_columns) < 2:  # one class only: nothing to learn, every prediction is that class
        constant_columns[fitted_columns] = 1.0
        return np.array([], dtype=np.int64), constant_columns, fit_targets
    return fitted_columns, constant_columns, fit_targets


def _checked_targets(texts: Sequence[str], targets: np.ndarray) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 2 or targets.shape[0] != len(texts) or not len(texts):
        raise ValueError(f"train_targets must be [N={len(texts)} > 0, L], got shape {targets.shape}")
    return targets


def _fitted(vectorizer: TfidfVectorizer, features, targets: np.ndarray, multi_label: bool, family: Family,
            settings: dict) -> TfidfBaseline:
    """A baseline from a vectorizer already fitted on the training texts and their ``features``."""
    fitted_columns, constant_columns, fit_targets = _label_layout(targets, multi_label)
    classifier = _classifier(family, multi_label, settings)
    if len(fitted_columns):
        classifier.fit(features, fit_targets)
    return TfidfBaseline(Pipeline([("tfidf", vectorizer), ("classifier", classifier)]), targets.shape[1],
                         multi_label, fitted_columns, constant_columns)


def fit_tfidf_baseline(train_texts: Sequence[str], train_targets: np.ndarray, language: Language,
                       multi_label: bool, family: Family = "lr", **settings: float) -> TfidfBaseline:
    """Fit one baseline on texts and multi-hot targets [N, L] (single-label rows have exactly one 1); ``settings``
    go to the scikit-learn classifier (``C``: inverse regularization of lr and svm; ``alpha``: nb's smoothing)."""
    targets = _checked_targets(train_texts, train_targets)
    vectorizer = _vectorizer(language)
    return _fitted(vectorizer, vectorizer.fit_transform(list(train_texts)), targets, multi_label, family, settings)


def tune_tfidf_baselines(train_texts: Sequence[str], train_targets: np.ndarray, val_texts: Sequence[str],
                         val_targets: np.ndarray, language: Language, multi_label: bool,
                         families: Sequence[Family] = ("lr", "svm", "nb")) -> list[TunedBaseline]:
    """Each family's baseline with its ``GRIDS`` setting of best val micro-F1 (ties: the first); one vectorizer,
    fitted on the training texts, serves them all."""
    targets = _checked_targets(train_texts, train_targets)
    vectorizer = _vectorizer(language)
    features = vectorizer.fit_transform(list(train_texts))
    tuned = []
    for family in families:
        [(key, values)] = GRIDS[family].items()
        candidates = []
        for value in values:
            baseline = _fitted(vectorizer, features, targets, multi_label, family, {key: value})
            score = f1_score(np.asarray(val_targets), baseline.predict(val_texts), average="micro", zero_division=0)
            candidates.append(TunedBaseline(family, {key: value}, values, round(float(score), 4), baseline))
        tuned.append(max(candidates, key=lambda candidate: candidate.val_micro_f1))
    return tuned
