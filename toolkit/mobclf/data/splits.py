"""Stratified train/val/test splits: iterative stratification for multi-label data, sklearn's for single-label.

Multi-label rows are split with ``MultilabelStratifiedShuffleSplit`` from ``iterative-stratification``
(Sechidis, Tsoumakas & Vlahavas, "On the Stratification of Multi-Label Data", ECML PKDD 2011), which keeps every
label's share close to the ratios; single-label rows with sklearn's ``StratifiedShuffleSplit``.

    parts = carve_splits(targets, carve=["val", "test"], ratios={"train": .8, "val": .1, "test": .1}, seed=42,
                         multi_label=False)
    parts["train"]  # sorted row indices
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from sklearn.model_selection import StratifiedShuffleSplit

SPLITS = ("train", "val", "test")


def min_examples_to_stratify(n_parts: int, multi_label: bool) -> int:
    """Examples a label needs before it can be stratified into ``n_parts`` splits.

    sklearn's stratified split refuses a class with one member, and we cut splits one at a time, so single-label
    data needs one example per split. Iterative stratification sends a label's first examples to the split that
    lacks it most (train, with the largest ratio), so any count works for multi-label data.
    """
    return 1 if multi_label else n_parts


def _split_off(targets: np.ndarray, size: float, seed: int, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, cut) of one stratified cut of ``size`` (a fraction) from the rows of ``targets``.

    A single-label class left with one row by an earlier cut (which sklearn refuses to stratify) stays with the
    kept rows, and the cut is made from the others with the same number of rows.
    """
    if multi_label:
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        return next(splitter.split(np.zeros(len(targets)), targets))
    y = targets.argmax(axis=1)
    classes, counts = np.unique(y, return_counts=True)
    alone = np.isin(y, classes[counts == 1])
    pool = np.flatnonzero(~alone)
    cut_rows = int(np.ceil(size * len(y)))
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=cut_rows if alone.any() else size, random_state=seed)
    kept, cut = next(splitter.split(np.zeros(len(pool)), y[pool]))
    return np.concatenate([pool[kept], np.flatnonzero(alone)]), pool[cut]


def _move_missing_labels_to_train(parts: dict[str, np.ndarray], targets: np.ndarray) -> None:
    """Make every label present in train by moving back one of its rows from another split where needed."""
    missing = np.flatnonzero(targets[parts["train"]].sum(axis=0) == 0)
    for label in missing:
        donor = next(name for name in parts if targets[parts[name], label].any())
        position = np.flatnonzero(targets[parts[donor], label])[0]
        parts["train"] = np.append(parts["train"], parts[donor][position])
        parts[donor] = np.delete(parts[donor], position)


def carve_splits(
    targets: np.ndarray, carve: Sequence[str], ratios: Mapping[str, float], seed: int, multi_label: bool
) -> dict[str, np.ndarray]:
    """Split rows (multi-hot ``targets`` [N, L], every label used) into train and the ``carve`` splits.

    Splits are cut one at a time, test before val, each taking ``ratios[name]`` of the ratios still left (so with
    only val carved, val gets val / (train + val) of the rows). Afterwards every label has an example in train.
    Returns sorted row indices per split. sklearn raises ``ValueError`` when the data is too small to stratify.
    """
    remaining = np.arange(len(targets))
    left = ratios["train"] + sum(ratios[name] for name in carve)
    parts = {}
    for name in sorted(carve, key=SPLITS.index, reverse=True):
        kept, cut = _split_off(targets[remaining], ratios[name] / left, seed, multi_label)
        parts[name], remaining = remaining[cut], remaining[kept]
        left -= ratios[name]
    parts["train"] = remaining
    _move_missing_labels_to_train(parts, targets)
    return {name: np.sort(parts[name]) for name in SPLITS if name in parts}
