"""TF-IDF + logistic regression: the n-gram baseline every neural model has to beat.

Chinese text uses character 1–2-grams, English word 1–2-grams. Single-label data gets one multinomial logistic
regression (lbfgs) over the argmax labels; multi-label data gets one binary logistic regression per label
(liblinear: same scores as lbfgs on Reuters, five times faster). Decisions are the plain defaults (argmax, or
probability >= 0.5), as in the reference figures of the data README.

    baseline = fit_tfidf_baseline(texts, targets, language="zh", multi_label=False)
    predicted = baseline.predict(test_texts)  # multi-hot [N, L]
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

Language = Literal["zh", "en"]
MAX_ITER = 1000


@dataclass
class TfidfBaseline:
    """A fitted TF-IDF + logistic-regression pipeline that answers in the toolkit's [N, L] label layout.

    ``fitted_columns`` are the label columns the classifier learned, in the order of its outputs; every other
    column had a single value in training (e.g. no positive example) and is predicted as ``constant_columns``.
    """

    pipeline: Pipeline
    num_labels: int
    multi_label: bool
    fitted_columns: np.ndarray
    constant_columns: np.ndarray

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of each label, float32 [N, L] (rows sum to 1 for single-label)."""
        probabilities = np.tile(self.constant_columns, (len(texts), 1)).astype(np.float32)
        if len(self.fitted_columns):
            fitted = self.pipeline.predict_proba(list(texts))
            # With a single fitted label, one-vs-rest answers [P(0), P(1)]; the last columns are always the labels.
            probabilities[:, self.fitted_columns] = fitted[:, -len(self.fitted_columns):]
        return probabilities

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Multi-hot int64 decisions [N, L]: argmax for single-label, probability >= 0.5 for multi-label."""
        probabilities = self.predict_proba(texts)
        if self.multi_label:
            return (probabilities >= 0.5).astype(np.int64)
        decisions = np.zeros(probabilities.shape, dtype=np.int64)
        decisions[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = 1
        return decisions

    @property
    def params(self) -> int:
        """Number of learned coefficients and intercepts."""
        if not len(self.fitted_columns):
            return 0
        classifier = self.pipeline.named_steps["classifier"]
        estimators = classifier.estimators_ if self.multi_label else [classifier]
        return sum(int(e.coef_.size + e.intercept_.size) for e in estimators)

    @property
    def size_bytes(self) -> int:
        """Size of the pickled pipeline (vocabulary, idf and weights), measured in memory only."""
        return len(pickle.dumps(self.pipeline, protocol=pickle.HIGHEST_PROTOCOL))


def _vectorizer(language: Language) -> TfidfVectorizer:
    if language == "zh":
        return TfidfVectorizer(analyzer="char", ngram_range=(1, 2))
    if language == "en":
        return TfidfVectorizer(analyzer="word", ngram_range=(1, 2))
    raise ValueError(f"language must be 'zh' or 'en', got {language!r}")


def fit_tfidf_baseline(
    train_texts: Sequence[str],
    train_targets: np.ndarray,
    language: Language,
    multi_label: bool,
    C: float = 1.0,
) -> TfidfBaseline:
    """Fit the baseline on texts and multi-hot targets [N, L] (single-label rows have exactly one 1).

    ``C`` is scikit-learn's inverse regularization strength; larger values fit the training data more closely.
    """
    targets = np.asarray(train_targets)
    if targets.ndim != 2 or targets.shape[0] != len(train_texts) or not len(train_texts):
        raise ValueError(f"train_targets must be [N={len(train_texts)} > 0, L], got shape {targets.shape}")
    num_labels = targets.shape[1]
    constant_columns = np.zeros(num_labels, dtype=np.float32)

    if multi_label:
        varies = targets.min(axis=0) != targets.max(axis=0)
        fitted_columns = np.flatnonzero(varies)
        constant_columns[~varies] = targets[0, ~varies]
        classifier = OneVsRestClassifier(LogisticRegression(C=C, solver="liblinear", max_iter=MAX_ITER))
        fit_targets = targets[:, fitted_columns]
    else:
        classifier = LogisticRegression(C=C, max_iter=MAX_ITER)
        fit_targets = targets.argmax(axis=1)
        fitted_columns = np.unique(fit_targets)

    pipeline = Pipeline([("tfidf", _vectorizer(language)), ("classifier", classifier)])
    if len(fitted_columns) >= (1 if multi_label else 2):
        pipeline.fit(list(train_texts), fit_targets)
    else:
        # One class only: nothing to learn, every prediction is that class.
        constant_columns[fitted_columns] = 1.0
        fitted_columns = np.array([], dtype=np.int64)
    return TfidfBaseline(pipeline, num_labels, multi_label, fitted_columns, constant_columns)
