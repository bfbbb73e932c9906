"""The data stage: read labelled text, check it, filter labels, split, and write a dataset artifact.

    art = run(PrepareConfig(), input=Path("news.jsonl"), out=Path("runs/data"))              # 80/10/10 split
    art = run(PrepareConfig(), train=Path("train.jsonl"), test=Path("test.jsonl"), out=...)  # val carved

The artifact holds ``train.arrow``, ``val.arrow`` and ``test.arrow`` (Arrow stream files of ``text`` and ``labels``,
see :mod:`mobclf.data.dataset`) and a manifest with the label list, label statistics, what filtering and
de-duplication dropped, the sources and how the split was made. Load it with :func:`mobclf.data.dataset.load_dataset`.

The input is read twice, a line at a time, so its texts are never all in memory: the first pass keeps each row's
labels, place and a digest of its text (for duplicates and shared texts), which is all that filtering and splitting
need; the second writes each kept text into its split file (and refuses a file that changed in between).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Iterator

from rich.text import Text

from mobclf.artifacts import Artifact, check_output_dir, lineage, load_artifact, sha256_file, write_artifact
from mobclf.console import console, progress
from mobclf.data.dataset import SplitWriter, split_file
from mobclf.data.readers import Row, detect_format, iter_labelled, read_class_file, text_digest
from mobclf.data.splits import SPLITS, carve_splits, label_matrix, min_examples_to_stratify
from mobclf.data.stats import filter_labels, label_counts, label_stats, rank_labels
from mobclf.data.stats import summary as stats_summary
from mobclf.errors import UserError
from mobclf.stages import PrepareConfig

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _first_pass(path: Path, read: Callable[[Path], Iterator[Row]]) -> list[Row]:
    """Every row of ``path`` with a digest of its text in place of the text (all that duplicates and shared texts
    need), and label tuples shared between rows with the same labels."""
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}
    rows = []
    with progress() as bar:
        task = bar.add_task(f"reading {path.name}", total=None, status="labels")
        for row in read(path):
            rows.append(Row(text_digest(row.text), shared.setdefault(row.labels, row.labels), row.path, row.line))
            bar.advance(task)
    return rows


def _second_pass(path: Path, read: Callable[[Path], Iterator[Row]], kept: list[tuple[Row, str]],
                 writers: dict[str, SplitWriter], train_texts: list[str], sample: int = 1000) -> None:
    """Write the texts of ``path``'s kept rows (``(row, split)`` in line order) into their splits' files, with the
    labels filtering left them; refuse the file if a row is not the one the first pass read."""
    position = 0
    with progress() as bar:
        task = bar.add_task(f"writing {path.name}", total=len(kept), status="texts")
        for row in read(path):
            if position == len(kept) or row.line != kept[position][0].line:
                continue  # a duplicate, or left without a label
            first, split = kept[position]
            if text_digest(row.text) != first.text:
                raise UserError("changed while it was read (a row differs from the first pass); run again when it "
                                "is complete", path=path, line=row.line)
            writers[split].add(row.text, first.labels)
            if split == "train" and len(train_texts) < sample:
                train_texts.append(row.text)
            position += 1
            bar.advance(task)
    if position != len(kept):
        raise UserError("changed while it was read (it has fewer rows than in the first pass); run again when it is "
                        "complete", path=path)


def summary(artifact: Artifact):
    """What ``mobclf data prepare`` shows of the dataset it wrote: splits and label counts."""
    return stats_summary(artifact.manifest)


def detect_language(texts: list[str], sample: int = 1000) -> str:
    """"zh" when most letters of the first ``sample`` texts are CJK characters, else "en"."""
    joined = "".join(texts[:sample])
    return "zh" if 2 * len(_CJK.findall(joined)) > sum(char.isalpha() for char in joined) else "en"


def _refuse_input_location(out: Path, inputs: list[Path]) -> None:
    """Refuse an ``out`` that is, or contains, the folder of an input: replacing it would remove the input."""
    target = out.resolve()
    for path in inputs:
        if target in path.resolve().parents:
            raise UserError(f"holds the input {path}; choose an --out that is not an input's folder", path=out)


def _drop_duplicates(rows: list[Row], warn: Callable[[str], None]) -> tuple[list[Row], int, int]:
    """Drop rows repeating an earlier text with the same labels; keep (and warn about) ones with other labels."""
    first_by_text: dict[str, Row] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    kept, dropped, conflicts = [], [], []
    for row in rows:
        first, key = first_by_text.setdefault(row.text, row), (row.text, frozenset(row.labels))
        if first is not row and (key == (first.text, frozenset(first.labels)) or key in seen):
            dropped.append(row)
            continue
        if first is not row:
            seen.update({(first.text, frozenset(first.labels)), key})  # the texts that occur with other labels
            conflicts.append((row, first))
        kept.append(row)
    if dropped:
        warn(f"dropped {len(dropped)} exact duplicate rows (same text and labels) of {rows[0].path}, "
             f"first at line {dropped[0].line}")
    if conflicts:
        row, first = conflicts[0]
        warn(f"{len(conflicts)} rows of {rows[0].path} repeat an earlier text with other labels (first: line "
             f"{row.line} {list(row.labels)} vs line {first.line} {list(first.labels)}); they are kept")
    return kept, len(dropped), len(conflicts)


def _warn_shared_texts(splits: dict[str, list[Row]], warn: Callable[[str], None]) -> None:
    train_by_text = {row.text: row for row in splits["train"]}
    shared = [(row, train_by_text[row.text]) for name in ("val", "test") for row in splits[name]
              if row.text in train_by_text]
    if shared:
        row, twin = shared[0]
        warn(f"{len(shared)} val/test texts also occur in train (first: {row.where} = {twin.where}); they are kept")


def _stratified_cut_sizes(rows: int, carve: list[str], ratios: dict[str, float]) -> dict[str, int]:
    """The split sizes sklearn's stratified split gives when :func:`carve_splits` cuts ``carve`` from ``rows``."""
    sizes, left = {}, ratios["train"] + sum(ratios[name] for name in carve)
    for name in sorted(carve, key=SPLITS.index, reverse=True):
        sizes[name] = math.ceil(ratios[name] / left * rows)
        rows -= sizes[name]
        left -= ratios[name]
    return {"train": rows, **sizes}


def _advice_to_stratify(counts: dict[str, int], carve: list[str], ratios: dict[str, float], least: int) -> str | None:
    """The one-line refusal when single-label rows with ``counts`` cannot be stratified into train + ``carve``
    (sklearn needs one row of every label in every part), with what helps; ``None`` when they can."""
    def short_split(kept: list[str]) -> tuple[str, int] | None:
        sizes = _stratified_cut_sizes(sum(counts[label] for label in kept), carve, ratios)
        return next(((name, size) for name, size in sizes.items() if size < len(kept)), None)

    labels = rank_labels(counts)
    short = short_split(labels)
    if short is None:
        return None
    name, size = short
    help_ = []
    for threshold in sorted({count for count in counts.values() if count > least}):
        kept = [label for label in labels if counts[label] >= threshold]
        if len(kept) >= 2 and short_split(kept) is None:
            help_.append(f"pass --min-label-count {threshold} to keep the {len(kept)} labels with that many examples")
            break
    help_.append(f"give {' and '.join(f'--{part}' for part in carve)} as files")
    help_.append(f"raise the {name} share of --split" if name != "train" else "lower the val/test shares of --split")
    return (f"cannot stratify {sum(counts.values())} rows of {len(counts)} labels into {'/'.join(['train', *carve])}: "
            f"the {name} split would get {size} rows, fewer than the labels, and each split needs every label; "
            + ", or ".join(help_))


def _carve(rows: list[Row], carve: list[str], ratios: dict[str, float], seed: int, multi_label: bool,
           path: Path) -> dict[str, list[Row]]:
    """Split the train rows into train plus the ``carve`` splits, refusing labels too rare to stratify."""
    counts = label_counts(rows)
    labels = rank_labels(counts)
    needed = min_examples_to_stratify(len(carve) + 1, multi_label)
    too_rare = [label for label in labels if counts[label] < needed]
    if too_rare:
        rarest = too_rare[-1]
        first = next(row for row in rows if rarest in row.labels)
        kept = [label for label in labels if counts[label] >= needed]
        fix = (f"pass --min-label-count {needed} to drop such labels" if len(kept) >= 2 else
               f"give {' and '.join(f'--{part}' for part in carve)} as files or add examples")
        raise UserError(
            f"label {rarest!r} has {counts[rarest]} example(s) (first here), too few to stratify into "
            f"{'/'.join(['train', *carve])}, which needs {needed} per label ({len(too_rare)} labels have fewer); {fix}",
            path=first.path,
            line=first.line,
        )
    if not multi_label:
        advice = _advice_to_stratify(counts, carve, ratios, needed - 1)
        if advice:
            raise UserError(advice, path=path)
    try:
        index = {label: position for position, label in enumerate(labels)}
        matrix = label_matrix([[index[label] for label in row.labels] for row in rows], len(labels))
        parts = carve_splits(matrix, carve, ratios, seed, multi_label)
    except ValueError as err:
        reason = " ".join(str(err).split())
        raise UserError(f"cannot stratify the split ({reason}); add data, change --split, use --min-label-count "
                        f"or give {' and '.join(f'--{part}' for part in carve)} as files", path=path) from None
    for name in carve:
        if not len(parts[name]):
            raise UserError(
                f"the {name} split carved from it is empty: each of its rows has a label with too few examples to "
                f"leave train; pass --min-label-count 2 (or higher) to drop rare labels, or give --{name} as a file",
                path=path)
    return {name: [rows[i] for i in indices] for name, indices in parts.items()}


def _warn_rare_multi_labels(rows: list[Row], carved: bool, path: Path, warn: Callable[[str], None]) -> None:
    """Multi-label data keeps labels with one training example (single-label data refuses them when it carves);
    say which, since they cannot be learnt well nor, when val/test are carved, evaluated."""
    counts = label_counts(rows)
    single = sorted(label for label, count in counts.items() if count == 1)
    if single:
        shown = ", ".join(repr(label) for label in single[:10]) + (", ..." if len(single) > 10 else "")
        where = "; they stay in train, so val/test never test them" if carved else ""
        warn(f"{len(single)} labels of {path} have a single training example ({shown}){where}; "
             "pass --min-label-count 2 to drop them")


def run(config: PrepareConfig, *, out: Path, input: Path | None = None, train: Path | None = None,
        val: Path | None = None, test: Path | None = None, class_file: Path | None = None,
        force: bool = False) -> Artifact:
    """Read, check, de-duplicate, filter and split labelled text into a dataset artifact at ``out``.

    ``input`` (or ``train``) alone is split into train/val/test by ``config.split``; a missing ``val`` or ``test``
    is carved from it the same way; given files are kept as they are. Multi-label data is split by iterative
    stratification, single-label data by sklearn's stratified split, both with ``config.seed``. Filtering is
    described in :func:`mobclf.data.stats.filter_labels`. Refuses to write into an input's folder, or over ``out``
    unless ``force``.
    """
    if (input is None) == (train is None):
        raise UserError("give the training data either as INPUT or as --train, not both or neither")
    train, fmt, ratios, seed = input or train, config.format, config.split, config.seed
    out = Path(out)
    given = {name: Path(path) for name, path in zip(SPLITS, (train, val, test)) if path is not None}
    class_file = Path(class_file) if class_file is not None else None
    _refuse_input_location(out, [*given.values(), *([class_file] if class_file else [])])
    check_output_dir(out, force)
    ratio_by_split = dict(zip(SPLITS, map(float, ratios)))
    formats = {name: fmt or detect_format(path) for name, path in given.items()}
    class_names = read_class_file(class_file) if class_file else None
    if class_names is not None and "thucnews" not in formats.values():
        raise UserError("--class-file is only for THUCNews text<TAB>label_id input (.txt or --format thucnews)",
                        path=class_file)

    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        console.print(Text.assemble(("warning: ", "bold yellow"), message))

    def read(path: Path):
        name = next(name for name, given_path in given.items() if given_path == path)
        return iter_labelled(path, formats[name], text_column=config.text_column, label_column=config.label_column,
                             label_sep=config.label_sep, class_names=class_names)

    splits, duplicates = {}, {"dropped": 0, "conflicting": 0}
    for name, path in given.items():
        splits[name], dropped, conflicting = _drop_duplicates(_first_pass(path, read), warn)
        duplicates["dropped"] += dropped
        duplicates["conflicting"] += conflicting

    as_read = splits
    min_label_count, filter_std = config.min_label_count, config.filter_std
    splits, filtering = filter_labels(splits, class_names, min_label_count, filter_std)
    for name in ("val", "test"):
        if name in given and not splits[name]:
            unknown = sorted({label for row in as_read[name] for label in row.labels})
            shown = ", ".join(map(repr, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
            raise UserError(f"no row keeps a label: its labels ({shown}) have no example in the training data "
                            f"{given['train']}{' that filtering kept' if min_label_count or filter_std else ''}; "
                            f"give the --{name} file of the same data", path=given[name])
    left = rank_labels(label_counts(splits["train"]))
    if len(left) < 2:
        if filtering["dropped_labels"] and (min_label_count is not None or filter_std is not None):
            raise UserError(f"{len(left)} label(s) left to learn after filtering, a classifier needs two or more; "
                            "lower --min-label-count/--filter-std", path=given["train"])
        raise UserError(f"the training data has {len(left)} label(s) {left}, a classifier needs two or more; "
                        "check --label-column", path=given["train"])
    multi_label = any(len(row.labels) != 1 for rows in splits.values() for row in rows)
    carve = [name for name in SPLITS if name not in given]
    if multi_label:
        _warn_rare_multi_labels(splits["train"], bool(carve), given["train"], warn)
    if carve:
        splits.update(_carve(splits["train"], carve, ratio_by_split, seed, multi_label, given["train"]))
    splits = {name: splits[name] for name in SPLITS}
    _warn_shared_texts(splits, warn)

    train_counts = label_counts(splits["train"])
    labels = [name for name in class_names if name in train_counts] if class_names else rank_labels(train_counts)
    sources = [{"path": str(path.resolve()), "sha256": sha256_file(path), "format": formats[name], "split": name}
               for name, path in given.items()]
    if class_file:
        sources.append({"path": str(class_file.resolve()), "sha256": sha256_file(class_file), "format": "class-list"})
    with write_artifact(out, kind="dataset", force=force) as art:
        writers = {name: SplitWriter(art.dir / split_file(name)) for name in splits}
        train_texts: list[str] = []
        for path in given.values():
            kept = sorted(((row, name) for name, rows in splits.items() for row in rows if row.path == path),
                          key=lambda pair: pair[0].line)
            _second_pass(path, read, kept, writers, train_texts)
        for writer in writers.values():
            writer.close()
        art.manifest.update(
            labels=labels,
            multi_label=multi_label,
            language=detect_language(train_texts),
            splits={name: len(rows) for name, rows in splits.items()},
            stats=label_stats(splits, labels),
            filtering=filtering,
            duplicates=duplicates,
            warnings=notes,
            sources=sources,
            split={
                "how": "given" if not carve else "iterative-stratification" if multi_label else "stratified",
                "given": list(given),
                "carved": carve,
                "ratios": ratio_by_split if carve else None,
                "seed": seed,
            },
            lineage=lineage([], seed),
        )
    return load_artifact(out, kind="dataset")
