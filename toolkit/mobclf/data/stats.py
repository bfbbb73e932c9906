"""Label statistics (counts, cardinality, density, head/tail) and label filtering for the data stage."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Mapping

import numpy as np
from rich.console import Group
from rich.table import Table

from mobclf.data.readers import Row

HEAD_SIZE = 5


def label_counts(rows: list[Row]) -> Counter[str]:
    return Counter(label for row in rows for label in row.labels)


def rank_labels(counts: Mapping[str, int]) -> list[str]:
    """Labels by descending count, then by name."""
    return sorted(counts, key=lambda label: (-counts[label], label))


def filter_labels(
    splits: dict[str, list[Row]], known_labels: list[str] | None = None, min_label_count: int | None = None,
    filter_std: float | None = None,
) -> tuple[dict[str, list[Row]], dict]:
    """Drop rare labels from every split, and the rows left without a label; return the rows and a report.

    Counts are taken on ``splits["train"]`` (the train input, before any val/test is carved from it) over
    ``known_labels`` (default: every label seen). A label is dropped when
      - it has no training example (it cannot be learnt; e.g. a class.txt name unused, or a test-only label), or
      - ``min_label_count`` is set and its count < ``min_label_count``, or
      - ``filter_std`` (K) is set and its count < mean - K * std, where mean and std (population, ddof=0) are taken
        over the counts of the labels with at least one training example. This is the "mean + k·std" frequency
        rule of seed paper 000 turned into a lower bound: K = 1 drops labels more than one std below the mean.
        Both rules use the same counts; dropping rows never changes a kept label's count.
    """
    train_counts = label_counts(splits["train"])
    universe = known_labels or sorted({label for rows in splits.values() for row in rows for label in row.labels})
    counts = {label: train_counts[label] for label in universe}
    used = np.array([count for count in counts.values() if count > 0], dtype=float)
    threshold = float(used.mean() - filter_std * used.std()) if filter_std is not None and used.size else None
    rules = ["count >= 1"]
    if min_label_count is not None:
        rules.append(f"count >= {min_label_count}")
    if threshold is not None:
        rules.append(f"count >= mean - {filter_std:g}*std = {used.mean():.2f} - {filter_std:g}*{used.std():.2f}"
                     f" = {threshold:.2f}")
    dropped = {
        label: count for label, count in counts.items()
        if count == 0 or count < (min_label_count or 0) or (threshold is not None and count < threshold)
    }
    kept_splits, dropped_rows = {}, {}
    for name, rows in splits.items():
        kept_splits[name] = [
            dataclasses.replace(row, labels=labels) for row in rows
            if (labels := tuple(label for label in row.labels if label not in dropped))
        ]
        dropped_rows[name] = len(rows) - len(kept_splits[name])
    report = {
        "rule": "keep a label if its training " + " and ".join(rules),
        "min_label_count": min_label_count,
        "filter_std": filter_std,
        "std_threshold": threshold,
        "dropped_labels": dropped,
        "dropped_rows": dropped_rows,
    }
    return kept_splits, report


def label_stats(splits: dict[str, list[Row]], labels: list[str]) -> dict:
    """Per split: examples, label cardinality and density, max labels per example, per-label counts (in ``labels``
    order); and the head/tail of the training label distribution with the share of examples the head covers."""
    per_split = {}
    for name, rows in splits.items():
        counts = label_counts(rows)
        sizes = [len(row.labels) for row in rows]
        cardinality = sum(sizes) / len(rows) if rows else 0.0
        per_split[name] = {
            "examples": len(rows),
            "cardinality": round(cardinality, 4),
            "density": round(cardinality / len(labels), 6),
            "max_labels": max(sizes, default=0),
            "label_counts": {label: counts[label] for label in labels},
        }
    train_counts = per_split["train"]["label_counts"]
    ranked = rank_labels(train_counts)
    head = set(ranked[:HEAD_SIZE])
    covered = sum(1 for row in splits["train"] if head.intersection(row.labels))
    return {
        "splits": per_split,
        "head": [{"label": label, "count": train_counts[label]} for label in ranked[:HEAD_SIZE]],
        "tail": [{"label": label, "count": train_counts[label]} for label in ranked[-HEAD_SIZE:]],
        "head_share": round(covered / len(splits["train"]), 4),
    }


def summary(manifest: dict) -> Group:
    """Rich tables of a dataset manifest: the splits, the head and tail labels, and what filtering dropped."""
    stats, filtering = manifest["stats"], manifest["filtering"]
    kind = "multi-label" if manifest["multi_label"] else "single-label"
    splits = Table(title=f"{len(manifest['labels'])} labels, {kind}, {manifest['language']}",
                   caption=f"split: {manifest['split']['how']}")
    for column in ("split", "examples", "cardinality", "density", "max labels"):
        splits.add_column(column, justify="left" if column == "split" else "right")
    for name, split in stats["splits"].items():
        splits.add_row(name, str(split["examples"]), f"{split['cardinality']:.3f}", f"{split['density']:.4f}",
                       str(split["max_labels"]))

    labels = Table(title="head / tail labels", caption=f"head covers {stats['head_share']:.1%} of train")
    labels.add_column("label")
    for name in stats["splits"]:
        labels.add_column(name, justify="right")
    shown = [entry["label"] for entry in stats["head"]]
    shown += [entry["label"] for entry in stats["tail"] if entry["label"] not in shown]
    for position, label in enumerate(shown):
        labels.add_row(label, *(str(split["label_counts"][label]) for split in stats["splits"].values()),
                       end_section=position == len(stats["head"]) - 1)

    dropped = filtering["dropped_labels"]
    lines = [f"filtering: {filtering['rule']}; dropped {len(dropped)} labels"
             + (f" ({', '.join(f'{label}: {count}' for label, count in list(dropped.items())[:10])}"
                f"{', ...' if len(dropped) > 10 else ''})" if dropped else "")
             + f" and {sum(filtering['dropped_rows'].values())} rows",
             f"duplicates: dropped {manifest['duplicates']['dropped']} exact, "
             f"{manifest['duplicates']['conflicting']} texts with conflicting labels kept"]
    return Group(splits, labels, *lines)
