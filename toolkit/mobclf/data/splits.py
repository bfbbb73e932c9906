"""Stratified train/val/test splits: iterative stratification for multi-label data, sklearn's for single-label.

Multi-label rows are split by iterative stratification (Sechidis, Tsoumakas & Vlahavas, "On the Stratification of
Multi-Label Data", ECML PKDD 2011), which keeps every label's share close to the ratios; single-label rows with
sklearn's ``StratifiedShuffleSplit``. Labels are a sparse row × label matrix (scipy CSR), so splitting 200k rows of
605 labels holds their ~1.6 labels each, not a dense 200k × 605 matrix.

    parts = carve_splits(labels, carve=["val", "test"], ratios={"train": .8, "val": .1, "test": .1}, seed=42,
                         multi_label=False)
    parts["train"]  # sorted row indices
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.model_selection import StratifiedShuffleSplit

SPLITS = ("train", "val", "test")


def label_matrix(rows: Sequence[Sequence[int]], num_labels: int) -> csr_matrix:
    """The sparse 0/1 matrix [rows, num_labels] of each row's label ids."""
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    indices = np.fromiter((label for row in rows for label in row), dtype=np.int32, count=int(lengths.sum()))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return csr_matrix((np.ones(len(indices), dtype=np.int8), indices, indptr), shape=(len(rows), num_labels))


def min_examples_to_stratify(n_parts: int, multi_label: bool) -> int:
    """Examples a label needs before it can be stratified into ``n_parts`` splits.

    sklearn's stratified split refuses a class with one member, and we cut splits one at a time, so single-label
    data needs one example per split. Iterative stratification sends a label's first examples to the split that
    lacks it most (train, with the largest ratio), so any count works for multi-label data.
    """
    return 1 if multi_label else n_parts


def iterative_split(labels: csr_matrix, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of one iterative-stratification cut of ``test_size`` (a fraction) of the rows.

    The same cut as ``iterstrat``'s ``MultilabelStratifiedShuffleSplit(n_splits=1, test_size, random_state=seed)``
    (same shuffle, same random tie-breaks: tests check they are equal), on sparse labels: that implementation takes
    a dense matrix and copies it several times, ~0.5 GB at 200k × 605. The rows of the rarest label still to place
    go, one by one, to the part that wants that label most (ties: the part that wants most rows, then at random);
    a placed row lowers its part's wants for each of its labels.
    """
    n = labels.shape[0]
    n_test = math.ceil(test_size * n)
    if not 0 < n_test < n:
        raise ValueError(f"with {n} rows, a cut of {test_size} leaves an empty part")
    rng = np.random.RandomState(seed)
    order = np.arange(n)
    rng.shuffle(order)
    shuffled = labels[order].tocsr()
    by_label = shuffled.tocsc()
    ratios = np.array([n - n_test, n_test]) / n
    wanted_rows = ratios * n
    wanted = np.outer(ratios, np.asarray(shuffled.sum(axis=0)).ravel())
    remaining = np.asarray(shuffled.sum(axis=0)).ravel().astype(np.int64)
    part = np.zeros(n, dtype=np.int64)
    placed = np.zeros(n, dtype=bool)

    def pick(choices: np.ndarray) -> int:
        return int(choices[rng.choice(len(choices))]) if len(choices) > 1 else int(choices[0])

    while not placed.all():
        if not remaining.any():  # rows without labels: to the parts that want most rows
            for row in np.flatnonzero(~placed):
                destination = pick(np.flatnonzero(wanted_rows == wanted_rows.max()))
                part[row] = destination
                wanted_rows[destination] -= 1
            break
        label = pick(np.flatnonzero(remaining == remaining[remaining > 0].min()))
        rows = by_label.indices[by_label.indptr[label]:by_label.indptr[label + 1]]
        for row in np.sort(rows[~placed[rows]]):
            parts = np.flatnonzero(wanted[:, label] == wanted[:, label].max())
            if len(parts) > 1:
                parts = parts[wanted_rows[parts] == wanted_rows[parts].max()]
            destination = pick(parts)
            row_labels = shuffled.indices[shuffled.indptr[row]:shuffled.indptr[row + 1]]
            part[row], placed[row] = destination, True
            wanted[destination, row_labels] -= 1
            wanted_rows[destination] -= 1
            remaining[row_labels] -= 1
    in_test = part[np.argsort(order)] == 1
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def _split_off(labels: csr_matrix, size: float, seed: int, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, cut) of one stratified cut of ``size`` (a fraction) from the rows of ``labels``.

    A single-label class left with one row by an earlier cut (which sklearn refuses to stratify) stays with the
    kept rows, and the cut is made from the others with the same number of rows.
    """
    if multi_label:
        return iterative_split(labels, size, seed)
    y = labels.indices[labels.indptr[:-1]]  # each row's one label
    classes, counts = np.unique(y, return_counts=True)
    alone = np.isin(y, classes[counts == 1])
    pool = np.flatnonzero(~alone)
    cut_rows = int(np.ceil(size * len(y)))
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=cut_rows if alone.any() else size, random_state=seed)
    kept, cut = next(splitter.split(np.zeros(len(pool)), y[pool]))
    return np.concatenate([pool[kept], np.flatnonzero(alone)]), pool[cut]


def _move_missing_labels_to_train(parts: dict[str, np.ndarray], labels: csr_matrix) -> None:
    """Make every label present in train by moving back one of its rows from another split where needed."""
    missing = np.flatnonzero(np.asarray(labels[parts["train"]].sum(axis=0)).ravel() == 0)
    for label in missing:
        donor = next(name for name in parts if labels[parts[name], label].nnz)
        position = int(np.flatnonzero(labels[parts[donor], label].toarray().ravel())[0])
        parts["train"] = np.append(parts["train"], parts[donor][position])
        parts[donor] = np.delete(parts[donor], position)


def carve_splits(
    labels: csr_matrix, carve: Sequence[str], ratios: Mapping[str, float], seed: int, multi_label: bool
) -> dict[str, np.ndarray]:
    """Split rows (sparse 0/1 ``labels`` [N, L], see :func:`label_matrix`; every label used) into train and the
    ``carve`` splits.

    Splits are cut one at a time, test before val, each taking ``ratios[name]`` of the ratios still left (so with
    only val carved, val gets val / (train + val) of the rows). Afterwards every label has an example in train.
    Returns sorted row indices per split. Raises ``ValueError`` when the data is too small to stratify.
    """
    labels = csr_matrix(labels)
    remaining = np.arange(labels.shape[0])
    left = ratios["train"] + sum(ratios[name] for name in carve)
    parts = {}
    for name in sorted(carve, key=SPLITS.index, reverse=True):
        kept, cut = _split_off(labels[remaining], ratios[name] / left, seed, multi_label)
        parts[name], remaining = remaining[cut], remaining[kept]
        left -= ratios[name]
    parts["train"] = remaining
    _move_missing_labels_to_train(parts, labels)
    return {name: np.sort(parts[name]) for name in SPLITS if name in parts}
