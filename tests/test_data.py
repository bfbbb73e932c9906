"""The data stage: readers, checks, filtering, splits, the dataset artifact and `mobclf data prepare`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
from scipy.sparse import csr_matrix
from dataset_rows import split_rows as read_split

from mobclf.artifacts import MANIFEST
from mobclf.cli import main
from mobclf.data.dataset import load_dataset, read_texts
from mobclf.data.demo_corpus import generate_article_corpus
from mobclf.data.prepare import detect_language, run
from mobclf.data.readers import detect_format, read_class_file, read_labelled
from mobclf.data.splits import carve_splits, iterative_split
from mobclf.errors import UserError
from mobclf.stages import PrepareConfig

SINGLE = [(f"news {label} number {i}", [label]) for label in ("sports", "finance", "games") for i in range(20)]
MULTI = [(f"story {i}", labels) for i, labels in enumerate(
    [["earn"]] * 30 + [["acq"]] * 20 + [["acq", "earn"]] * 10 + [["grain", "wheat"]] * 12 + [["grain"]] * 8
    + [["crude", "ship"]] * 6 + [["ship"]] * 4)]


def prepare(*, out, train=None, val=None, test=None, class_file=None, force=False, **settings):
    """The data stage with its settings as keywords."""
    return run(PrepareConfig(**settings), out=out, train=train, val=val, test=test, class_file=class_file,
               force=force)


def write_jsonl(path: Path, items, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": text, "labels": labels, **extra}, ensure_ascii=False) + "\n"
                            for text, labels in items), encoding="utf-8")
    return path


@pytest.fixture
def indir(tmp_path) -> Path:
    (tmp_path / "in").mkdir()
    return tmp_path / "in"


# --- readers ---------------------------------------------------------------------------------------------------------

def test_jsonl_reader_accepts_list_or_string_labels_and_skips_blank_lines(indir):
    path = indir / "a.jsonl"
    path.write_text('{"text": "one", "labels": ["x", "y"]}\n\n{"text": "two", "labels": "x"}\n', encoding="utf-8")
    rows = read_labelled(path)
    assert [(row.text, row.labels, row.line) for row in rows] == [("one", ("x", "y"), 1), ("two", ("x",), 3)]
    assert rows[1].path == path


def test_csv_reader_with_label_separator_and_quoted_multiline_text(indir):
    path = indir / "a.csv"
    path.write_text('id,title,tags\n1,"first, quoted\nover two lines",a|b\n2,second,b\n', encoding="utf-8")
    rows = read_labelled(path, text_column="title", label_column="tags", label_sep="|")
    assert [(row.text, row.labels, row.line) for row in rows] == [
        ("first, quoted\nover two lines", ("a", "b"), 2), ("second", ("b",), 4)]


def test_tsv_reader_keeps_a_cell_as_one_label_by_default(indir):
    path = indir / "a.tsv"
    path.write_text("text\tlabels\nhello\tx,y\n", encoding="utf-8")
    assert [row.labels for row in read_labelled(path)] == [("x,y",)]
    assert [row.labels for row in read_labelled(path, label_sep=",")] == [("x", "y")]


def test_thucnews_reader_maps_ids_to_class_names(indir):
    path = indir / "train.txt"
    path.write_text("体育新闻标题\t1\n财经新闻标题\t0\n", encoding="utf-8")
    rows = read_labelled(path, class_names=["finance", "sports"])
    assert [(row.text, row.labels) for row in rows] == [("体育新闻标题", ("sports",)), ("财经新闻标题", ("finance",))]


def test_format_comes_from_the_extension_unless_given(indir):
    assert [detect_format(Path(name)) for name in ("a.jsonl", "a.JSON", "a.csv", "a.tsv", "a.txt")] == [
        "jsonl", "jsonl", "csv", "tsv", "thucnews"]
    path = write_jsonl(indir / "data.txt", [("hello", ["x"])])
    assert read_labelled(path, "jsonl")[0].labels == ("x",)
    with pytest.raises(UserError, match="--format"):
        detect_format(indir / "data.xml")


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"], ids=["cr", "crlf", "lf"])
def test_readers_accept_cr_crlf_and_lf_line_endings(indir, newline):
    """Old Mac files end lines in a bare CR; every reader splits at CR LF, CR or LF, and line numbers stay right."""
    def write(name: str, lines: list[str]) -> Path:
        (indir / name).write_bytes(newline.join(lines).encode() + newline.encode())
        return indir / name

    jsonl = write("a.jsonl", ['{"text": "one", "labels": ["x"]}', "", '{"text": "two", "labels": "y"}'])
    assert [(row.text, row.labels, row.line) for row in read_labelled(jsonl)] == [
        ("one", ("x",), 1), ("two", ("y",), 3)]
    csv_path = write("a.csv", ["text,labels", f'"one,{newline}quoted",x', "", "two,y"])
    assert [(row.text, row.labels, row.line) for row in read_labelled(csv_path)] == [
        (f"one,{newline}quoted", ("x",), 2), ("two", ("y",), 5)]
    tsv = write("a.tsv", ["text\tlabels", "one\tx", "two\ty"])
    assert [(row.text, row.labels, row.line) for row in read_labelled(tsv)] == [("one", ("x",), 2), ("two", ("y",), 3)]
    classes = write("class.txt", ["体育", "财经"])
    thucnews = write("a.txt", ["标题一\t1", "标题二\t0"])
    rows = read_labelled(thucnews, class_names=read_class_file(classes))
    assert [(row.text, row.labels, row.line) for row in rows] == [("标题一", ("财经",), 1), ("标题二", ("体育",), 2)]
    bad = write("bad.jsonl", ['{"text": "one", "labels": ["x"]}', "", '{"text": "two"}'])
    with pytest.raises(UserError, match=f"^{bad}:3: missing field 'labels'"):
        read_labelled(bad)


def test_jsonl_text_may_hold_unicode_line_separators(indir):
    """Lines split at CR/LF only: U+2028, U+2029 and U+0085 (which str.splitlines splits at) are text here."""
    path = indir / "a.jsonl"
    path.write_bytes('{"text": "a\u2028b\u2029c\u0085d", "labels": ["x"]}\n{"text": "e", "labels": ["y"]}\n'.encode())
    assert [(row.text, row.line) for row in read_labelled(path)] == [("a\u2028b\u2029c\u0085d", 1), ("e", 2)]


def test_tsv_keeps_quotes_as_they_are(indir):
    """TSV has no quoting: a quoted title keeps its quotes, and a quote inside a text is no error (CSV unquotes)."""
    path = indir / "a.tsv"
    path.write_text('text\tlabels\n"独家专访"\t体育\n"独家"报道：他说"好"\t"财经"\n', encoding="utf-8")
    assert [(row.text, row.labels, row.line) for row in read_labelled(path)] == [
        ('"独家专访"', ("体育",), 2), ('"独家"报道：他说"好"', ('"财经"',), 3)]
    csv_path = indir / "a.csv"
    csv_path.write_text('text,labels\n"独家专访",体育\n', encoding="utf-8")
    assert [row.text for row in read_labelled(csv_path)] == ["独家专访"]


@pytest.mark.parametrize("carved", [True, False], ids=["carved", "given"])
def test_multi_label_single_example_labels_are_kept_with_a_warning(indir, tmp_path, capsys, carved):
    items = MULTI + [("lonely one", ["earn", "zinc"]), ("lonely two", ["acq", "tin"])]
    given = {} if carved else {"val": write_jsonl(indir / "val.jsonl", MULTI[::5]),
                               "test": write_jsonl(indir / "test.jsonl", MULTI[1::5])}
    art = prepare(train=write_jsonl(indir / "a.jsonl", items), out=tmp_path / "out", **given)
    assert {"tin", "zinc"} <= set(art.manifest["labels"])
    expected = (f"2 labels of {indir / 'a.jsonl'} have a single training example ('tin', 'zinc')"
                + ("; they stay in train, so val/test never test them" if carved else "")
                + "; pass --min-label-count 2 to drop them")
    assert expected in art.manifest["warnings"]
    assert "single training example" in capsys.readouterr().err
    assert "tin" in {label for _, labels in read_split(art.path, "train") for label in labels}


def test_multi_label_carved_split_left_empty_is_refused(indir, tmp_path):
    """Every row has a label with one example: they all stay in train, and an empty val/test is refused."""
    items = [(f"story {i}", [f"only{i}", "common" if i % 2 else "other"]) for i in range(20)]
    path = write_jsonl(indir / "a.jsonl", items)
    with pytest.raises(UserError, match=f"^{path}: the (val|test) split carved from it is empty.*--min-label-count 2"):
        prepare(train=path, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


BAD_INPUTS = {
    "empty text": ("a.jsonl", '{"text": "ok", "labels": ["x"]}\n{"text": "  ", "labels": ["x"]}\n', 2, "empty text"),
    "missing field": ("a.jsonl", '{"text": "ok", "labels": ["x"]}\n{"text": "no labels"}\n', 2, "missing field"),
    "empty labels": ("a.jsonl", '{"text": "ok", "labels": []}\n', 1, "label"),
    "malformed json": ("a.jsonl", '{"text": "ok", "labels": ["x"]}\n{"text": "ok", \n', 2, "malformed JSON"),
    "invalid utf-8": ("a.jsonl", '{"text": "ok", "labels": ["x"]}\n'.encode() * 2 + b'{"text": "\xff"}\n', 3,
                      "invalid UTF-8"),
    "missing column": ("a.csv", "title,labels\nhello,x\n", 1, "no column 'text'"),
    "wrong field count": ("a.csv", "text,labels\nhello,x\nhello, world,x\n", 3, "3 fields, but the header has 2"),
    "unknown label id": ("a.txt", "标题一\t0\n标题二\t7\n", 2, "unknown label id '7'"),
    "thucnews field count": ("a.txt", "标题一\t0\t1\n", 1, "3 tab-separated fields"),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_names_file_and_line(indir, case):
    name, content, line, message = case
    path = indir / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(UserError, match=message) as caught:
        read_labelled(path, class_names=["finance", "sports"])
    assert str(caught.value.message).startswith(f"{path}:{line}: ")
    assert (caught.value.path, caught.value.line) == (path, line)


def test_thucnews_without_class_file_is_refused(indir, tmp_path):
    path = indir / "train.txt"
    path.write_text("标题\t0\n", encoding="utf-8")
    with pytest.raises(UserError, match="--class-file"):
        prepare(train=path, out=tmp_path / "out")


def test_label_too_rare_to_stratify_names_label_count_and_fix(indir, tmp_path):
    path = write_jsonl(indir / "a.jsonl", SINGLE + [("lonely", ["rare"]), ("lonely too", ["rare"])])
    with pytest.raises(UserError, match=r"label 'rare' has 2 example\(s\).*--min-label-count 3") as caught:
        prepare(train=path, out=tmp_path / "out")
    assert caught.value.line == len(SINGLE) + 1
    assert not (tmp_path / "out").exists()


def test_data_too_small_to_stratify_is_a_user_error(indir, tmp_path):
    path = write_jsonl(indir / "a.jsonl", SINGLE[:3] + SINGLE[20:23] + SINGLE[40:43])
    with pytest.raises(UserError, match=f"{path}: cannot stratify 9 rows of 3 labels into train/val/test: the test "
                       "split would get 1 rows.*give --val and --test as files, or raise the test share of --split"):
        prepare(train=path, out=tmp_path / "out")


def test_too_many_labels_to_stratify_says_what_helps(indir, tmp_path):
    """1,200 labels of 3 examples each and 10 of 60: a 10% test split of 4,200 rows cannot hold every label; the
    refusal names --min-label-count at the count that works (sklearn's own message names its test_size)."""
    items = [(f"rare {label} {i}", [f"r{label}"]) for label in range(1200) for i in range(3)]
    items += [(f"big {label} {i}", [f"b{label}"]) for label in range(10) for i in range(60)]
    path = write_jsonl(indir / "a.jsonl", items)
    with pytest.raises(UserError, match=f"^{path}: cannot stratify 4200 rows of 1210 labels.*the test split would "
                       "get 420 rows.*pass --min-label-count 60 to keep the 10 labels") as caught:
        prepare(train=path, out=tmp_path / "out")
    assert "test_size" not in caught.value.message and "\n" not in caught.value.message
    art = prepare(train=path, out=tmp_path / "out", min_label_count=60)
    assert sum(art.manifest["splits"].values()) == 600 and art.manifest["filtering"]["dropped_rows"] == {"train": 3600}


def test_big_carved_shares_leave_no_class_with_one_row(indir, tmp_path):
    """Cutting 40% test then 40% val can leave a class of three with one row for the second cut, which sklearn
    refuses to stratify; that row stays in train."""
    items = [(f"news {label} {i}", [label]) for label, n in (("a", 3), ("b", 3), ("c", 3), ("d", 12)) for i in range(n)]
    art = prepare(train=write_jsonl(indir / "a.jsonl", items), out=tmp_path / "out", split=(0.2, 0.4, 0.4))
    parts = {name: read_split(art.path, name) for name in ("train", "val", "test")}
    assert sorted(row for rows in parts.values() for row in rows) == sorted((t, tuple(l)) for t, l in items)
    assert {labels for _, labels in parts["train"]} == {("a",), ("b",), ("c",), ("d",)}


def test_multi_label_with_many_labels_splits(indir, tmp_path):
    """~1,200 multi-label labels, most with one or two examples: no crash, and the single-example ones are warned."""
    items = [(f"story {label} {i}", [f"l{label}"] + (["common"] if i else [])) for label in range(1200)
             for i in range(1 + label % 2)]
    items += [(f"filler {i}", ["common", "other"]) for i in range(200)]
    art = prepare(train=write_jsonl(indir / "a.jsonl", items), out=tmp_path / "out")
    assert art.manifest["multi_label"] is True and len(art.manifest["labels"]) == 1202
    assert sum(art.manifest["splits"].values()) == len(items) and min(art.manifest["splits"].values()) > 0
    assert any(warning.startswith(f"600 labels of {indir / 'a.jsonl'} have a single training example ('l0', ")
               for warning in art.manifest["warnings"])


def test_unreadable_input_is_a_user_error(indir, tmp_path):
    """An OSError while reading (here: a folder given where a file belongs, as a recipe may) names the path."""
    with pytest.raises(UserError, match=f"^{indir}: cannot read the file"):
        prepare(train=indir, format="jsonl", out=tmp_path / "out")


def test_class_file_needs_thucnews_input(indir, tmp_path):
    (indir / "class.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(UserError, match="--class-file is only for THUCNews"):
        prepare(train=write_jsonl(indir / "a.jsonl", SINGLE), class_file=indir / "class.txt",
                        out=tmp_path / "out")


# --- duplicates ------------------------------------------------------------------------------------------------------

def test_exact_duplicates_dropped_and_conflicts_warned(indir, tmp_path, capsys):
    items = SINGLE + [SINGLE[0], SINGLE[0], (SINGLE[1][0], ["finance"])]
    art = prepare(train=write_jsonl(indir / "a.jsonl", items), out=tmp_path / "out")
    assert art.manifest["duplicates"] == {"dropped": 2, "conflicting": 1}
    assert sum(art.manifest["splits"].values()) == len(SINGLE) + 1
    warnings = art.manifest["warnings"]
    assert warnings[0].startswith("dropped 2 exact duplicate rows") and warnings[0].endswith("first at line 61")
    assert warnings[1].startswith(f"1 rows of {indir / 'a.jsonl'} repeat an earlier text with other labels "
                                  "(first: line 63 ['finance'] vs line 2 ['sports'])")
    assert " ".join(capsys.readouterr().err.split()) == " ".join(f"warning: {line}" for line in warnings)


# --- splits ----------------------------------------------------------------------------------------------------------

def test_single_file_single_label_stratified_split(indir, tmp_path):
    art = prepare(train=write_jsonl(indir / "a.jsonl", SINGLE), out=tmp_path / "out")
    out = art.path
    parts = {name: read_split(out, name) for name in ("train", "val", "test")}
    assert sorted(row for rows in parts.values() for row in rows) == sorted((t, tuple(l)) for t, l in SINGLE)
    assert art.manifest["splits"] == {"train": 48, "val": 6, "test": 6}
    assert art.manifest["split"]["how"] == "stratified"
    assert art.manifest["multi_label"] is False
    for rows in parts.values():  # 20 per label, 80/10/10: exactly proportional
        assert set(Counter(labels for _, labels in rows).values()) == {len(rows) // 3}


def test_iterative_split_is_iterstrats_cut_row_for_row_on_sparse_labels():
    """The sparse iterative stratification cuts what iterstrat's MultilabelStratifiedShuffleSplit (the reference,
    a test dependency) cuts from the same dense matrix: same shuffle, same random tie-breaks, rows without labels."""
    rng = np.random.default_rng(1)
    for seed in range(40):
        rows, labels = int(rng.integers(5, 300)), int(rng.integers(2, 40))
        dense = (rng.random((rows, labels)) < rng.uniform(0.02, 0.3)).astype(np.int8)
        dense[rng.random(rows) < 0.1] = 0
        size = float(rng.choice([0.1, 0.2, 0.25, 0.5]))
        reference = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        expected = next(reference.split(np.zeros(rows), dense))
        ours = iterative_split(csr_matrix(dense), size, seed)
        assert all(np.array_equal(got, wanted) for got, wanted in zip(ours, expected)), seed


def test_multi_label_split_uses_iterative_stratification(indir, tmp_path):
    art = prepare(train=write_jsonl(indir / "a.jsonl", MULTI), out=tmp_path / "out")
    assert art.manifest["split"]["how"] == "iterative-stratification"
    assert art.manifest["multi_label"] is True
    parts = {name: read_split(art.path, name) for name in ("train", "val", "test")}
    assert sorted(row for rows in parts.values() for row in rows) == sorted((t, tuple(l)) for t, l in MULTI)
    assert {label for _, labels in parts["train"] for label in labels} == set(art.manifest["labels"])
    stats = art.manifest["stats"]
    assert stats["splits"]["train"]["max_labels"] == 2
    assert stats["head"][0] == {"label": "earn", "count": stats["splits"]["train"]["label_counts"]["earn"]}
    assert art.manifest["labels"][:2] == ["earn", "acq"]


def test_carve_splits_partitions_rows_and_keeps_every_label_in_train():
    rng = np.random.default_rng(0)
    for seed in range(5):
        targets = (rng.random((60, 12)) < 0.15).astype(np.int8)
        targets[np.arange(60), rng.integers(0, 12, 60)] = 1  # every row has a label
        targets[:, 11] = 0
        targets[rng.integers(0, 60), 11] = 1  # a label with one example
        parts = carve_splits(csr_matrix(targets), ["val", "test"], {"train": .6, "val": .2, "test": .2}, seed,
                             multi_label=True)
        assert sorted(np.concatenate(list(parts.values()))) == list(range(60))
        assert (targets[parts["train"]].sum(axis=0) > 0).all()


def test_a_file_that_changes_between_the_two_reads_is_refused_not_half_written(indir, tmp_path, monkeypatch):
    """prepare reads its input twice, a line at a time (labels first, then the texts of the rows it keeps)."""
    from mobclf.data import prepare as prepare_module

    path, reads = write_jsonl(indir / "a.jsonl", SINGLE), []
    read = prepare_module.iter_labelled

    def read_then_edit(*args, **options):
        reads.append(args[0])
        if len(reads) == 2:
            write_jsonl(path, [(text + " edited", labels) for text, labels in SINGLE])
        return read(*args, **options)

    monkeypatch.setattr(prepare_module, "iter_labelled", read_then_edit)
    with pytest.raises(UserError, match="changed while it was read") as refused:
        prepare(train=path, out=tmp_path / "out")
    assert refused.value.line is not None and reads == [path, path]
    assert not (tmp_path / "out").exists()


def test_given_splits_are_kept_as_they_are(indir, tmp_path):
    paths = {name: write_jsonl(indir / f"{name}.jsonl", SINGLE[offset::3]) for offset, name in
             enumerate(("train", "val", "test"))}
    art = prepare(**paths, out=tmp_path / "out")
    assert art.manifest["split"]["how"] == "given"
    for offset, name in enumerate(("train", "val", "test")):
        assert read_split(art.path, name) == [(text, tuple(labels)) for text, labels in SINGLE[offset::3]]
    assert [source["split"] for source in art.manifest["sources"]] == ["train", "val", "test"]


def test_train_and_test_given_val_carved_from_train(indir, tmp_path):
    train = [item for index, item in enumerate(SINGLE) if index % 4]
    test = [item for index, item in enumerate(SINGLE) if not index % 4]
    art = prepare(train=write_jsonl(indir / "train.jsonl", train),
                          test=write_jsonl(indir / "test.jsonl", test), out=tmp_path / "out")
    assert read_split(art.path, "test") == [(text, tuple(labels)) for text, labels in test]
    assert sorted(read_split(art.path, "train") + read_split(art.path, "val")) == sorted(
        (text, tuple(labels)) for text, labels in train)
    assert art.manifest["split"] == {"how": "stratified", "given": ["train", "test"], "carved": ["val"],
                                     "ratios": {"train": .8, "val": .1, "test": .1}, "seed": 42}
    assert art.manifest["splits"]["val"] == 5  # 45 * 0.1 / 0.9


# --- filtering -------------------------------------------------------------------------------------------------------

def test_min_label_count_drops_labels_and_rows_left_without_labels(indir, tmp_path):
    items = SINGLE + [(f"rare {i}", ["rare"]) for i in range(4)] + [("mixed", ["rare", "sports"])]
    art = prepare(train=write_jsonl(indir / "a.jsonl", items), out=tmp_path / "out", min_label_count=6)
    filtering = art.manifest["filtering"]
    assert filtering["dropped_labels"] == {"rare": 5}
    assert filtering["dropped_rows"] == {"train": 4}
    assert "count >= 6" in filtering["rule"]
    assert "rare" not in art.manifest["labels"]
    assert ("mixed", ("sports",)) in [row for name in ("train", "val", "test") for row in read_split(art.path, name)]


def test_filter_std_drops_labels_below_mean_minus_k_std(indir, tmp_path):
    counts = {"a": 30, "b": 30, "c": 30, "d": 3}
    items = [(f"{label} {i}", [label]) for label, n in counts.items() for i in range(n)]
    art = prepare(train=write_jsonl(indir / "a.jsonl", items), out=tmp_path / "out", filter_std=1.0)
    values = np.array(list(counts.values()), dtype=float)
    filtering = art.manifest["filtering"]
    assert filtering["std_threshold"] == pytest.approx(values.mean() - values.std())
    assert filtering["dropped_labels"] == {"d": 3}
    assert art.manifest["labels"] == ["a", "b", "c"]


def test_labels_without_training_examples_are_dropped_from_every_split(indir, tmp_path):
    test = SINGLE[::5] + [("only in test", ["weather"])]
    art = prepare(train=write_jsonl(indir / "train.jsonl", SINGLE), val=write_jsonl(indir / "val.jsonl",
                          SINGLE[::7]), test=write_jsonl(indir / "test.jsonl", test), out=tmp_path / "out")
    assert art.manifest["filtering"]["dropped_labels"] == {"weather": 0}
    assert art.manifest["filtering"]["dropped_rows"] == {"train": 0, "val": 0, "test": 1}
    assert art.manifest["splits"]["test"] == len(test) - 1


# --- output safety ---------------------------------------------------------------------------------------------------

def test_refuses_to_overwrite_without_force(indir, tmp_path):
    path = write_jsonl(indir / "a.jsonl", SINGLE)
    out = tmp_path / "out"
    prepare(train=path, out=out)
    manifest = (out / MANIFEST).read_text()
    with pytest.raises(UserError, match="--force"):
        prepare(train=path, out=out, seed=1)
    assert (out / MANIFEST).read_text() == manifest
    assert prepare(train=path, out=out, seed=1, force=True).manifest["split"]["seed"] == 1


@pytest.mark.parametrize("where", [".", ".."])
def test_never_writes_over_an_input_folder(indir, where):
    path = write_jsonl(indir / "a.jsonl", SINGLE)
    before = sorted(p.name for p in indir.parent.rglob("*"))
    with pytest.raises(UserError, match="holds the input"):
        prepare(train=path, out=indir / where, force=True)
    assert sorted(p.name for p in indir.parent.rglob("*")) == before
    assert path.read_text(encoding="utf-8").count("\n") == len(SINGLE)


# --- dataset artifact ------------------------------------------------------------------------------------------------

def test_load_dataset_gives_lazy_texts_and_multi_hot_targets(indir, tmp_path):
    prepare(train=write_jsonl(indir / "a.jsonl", MULTI), out=tmp_path / "out")
    data = load_dataset(tmp_path / "out")
    assert data.multi_label and data.language == "en"
    rows = read_split(tmp_path / "out", "train")
    texts = data.texts("train")
    assert len(texts) == len(rows) and list(texts) == [text for text, _ in rows]
    assert texts[3] == rows[3][0] and texts[np.int64(-1)] == rows[-1][0] and texts[2:5] == [t for t, _ in rows[2:5]]
    assert texts.take(torch.tensor([4, 0, 4])) == [rows[4][0], rows[0][0], rows[4][0]]
    both = texts + ["one more"]
    assert len(both) == len(rows) + 1 and both[len(rows)] == "one more" and both.take([0])[0] == rows[0][0]
    targets = data.targets("train")
    assert targets.dtype == np.float32 and targets.shape == (len(rows), len(data.labels))
    for (_, labels), row in zip(rows, targets):
        assert [data.labels[i] for i in np.flatnonzero(row)] == sorted(labels, key=data.labels.index)
    some = data.targets("train", np.uint8, rows=[7, 2])
    assert some.dtype == np.uint8 and np.array_equal(some, targets[[7, 2]])
    assert data.label_counts("train").tolist() == [
        data.artifact.manifest["stats"]["splits"]["train"]["label_counts"][label] for label in data.labels]
    with pytest.raises(UserError, match="no split 'dev'"):
        data.texts("dev")


def test_thucnews_dataset_keeps_class_file_order_and_detects_chinese(indir, tmp_path):
    classes = ["体育", "财经", "游戏"]
    (indir / "class.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    lines = [f"第{i}条{classes[i % 3]}新闻标题\t{i % 3}" for i in range(30)]
    (indir / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    art = prepare(train=indir / "train.txt", class_file=indir / "class.txt", out=tmp_path / "out")
    assert art.manifest["labels"] == classes
    assert art.manifest["language"] == "zh"
    assert {source["format"] for source in art.manifest["sources"]} == {"thucnews", "class-list"}
    assert "体育" in {label for _, labels in read_split(tmp_path / "out", "train") for label in labels}


def test_detect_language():
    assert detect_language(["股市今日大涨 A股收盘", "CBA联赛 第3轮"]) == "zh"
    assert detect_language(["Stocks rallied on Monday", "Oil prices fell 3%"]) == "en"


def test_read_texts_from_jsonl_and_txt(indir):
    jsonl = indir / "u.jsonl"
    jsonl.write_text('{"text": "one", "labels": ["x"]}\n\n{"text": "two"}\n', encoding="utf-8")
    txt = indir / "u.txt"
    txt.write_text("first\n\n  \nsecond\n", encoding="utf-8")
    assert read_texts(jsonl) == ["one", "two"]
    assert read_texts(txt) == ["first", "second"]
    jsonl.write_text('{"text": "one"}\n{"body": "two"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=f"{jsonl}:2: missing field 'text'"):
        read_texts(jsonl)


# --- command line ----------------------------------------------------------------------------------------------------

def test_cli_prepare_prints_statistics(indir, tmp_path):
    path = write_jsonl(indir / "a.jsonl", MULTI)
    result = CliRunner().invoke(main, ["data", "prepare", str(path), "--out", str(tmp_path / "out"),
                                       "--split", "0.7", "0.15", "0.15", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "iterative-stratification" in result.output and "earn" in result.output
    assert load_dataset(tmp_path / "out").artifact.manifest["split"]["seed"] == 3


@pytest.mark.parametrize("args, message", [
    (["{bad}", "--out", "{out}"], "{bad}:2: malformed JSON"),
    (["{bad}", "--train", "{bad}", "--out", "{out}"], "either as INPUT or as --train"),
    (["{good}", "--out", "{out}", "--split", "0.5", "0.1", "0.1"], "sum to 1"),
])
def test_cli_bad_input_exits_2_with_one_line(indir, tmp_path, args, message):
    good = write_jsonl(indir / "good.jsonl", SINGLE)
    bad = indir / "bad.jsonl"
    bad.write_text('{"text": "a", "labels": "x"}\n{"text": oops}\n', encoding="utf-8")
    names = {"good": good, "bad": bad, "out": tmp_path / "out"}
    result = CliRunner().invoke(main, ["data", "prepare", *(arg.format(**names) for arg in args)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert message.format(**names) in result.output and "Traceback" not in result.output


READ_EVERY_BATCH = """
import sys
import numpy as np
from mobclf.data.dataset import load_dataset
from mobclf.train.batching import batch_indices


def anonymous_kb():  # what the process holds itself (mapped file pages are the kernel's to drop)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))


data = load_dataset(sys.argv[1])
texts, peak = data.texts("train"), anonymous_kb()
for index in batch_indices(len(texts), 64, shuffle=True, seed=0):  # every row, in training's order
    assert len(texts.take(index)) == len(data.targets("train", np.uint8, rows=index)) == len(index)
    peak = max(peak, anonymous_kb())
assert data.label_counts("train").sum() > len(texts)
lazily = max(peak, anonymous_kb())
everything = list(texts)  # what holding the split would cost, for scale
print(lazily, anonymous_kb() - lazily)
"""


def test_reading_a_dataset_lazily_takes_no_more_memory_for_ten_times_the_articles(tmp_path):
    """Peak anonymous memory of reading every training batch (texts and targets) of 4k and of 40k generated
    articles (605 labels): equal within 2 MB, while holding the 40k texts as a list would take > 10 MB."""
    peaks, held = [], 0
    for size in (4_000, 40_000):
        corpus = tmp_path / f"articles-{size}.jsonl"
        generate_article_corpus(corpus, size, seed=3)
        lines = corpus.read_text("utf-8").splitlines(keepends=True)
        given = {name: tmp_path / f"{name}-{size}.jsonl" for name in ("val", "test")}
        for name, part in given.items():  # given val/test: this test is about reading, not splitting
            part.write_text("".join(lines[:200] if name == "val" else lines[200:400]), "utf-8")
        prepare(train=corpus, out=tmp_path / f"data-{size}", **given)
        read = subprocess.run([sys.executable, "-c", READ_EVERY_BATCH, str(tmp_path / f"data-{size}")],
                              capture_output=True, text=True, check=True)
        peak, held = map(int, read.stdout.split())
        peaks.append(peak)
    assert held > 10_000  # KB: the 40k texts as Python strings
    assert abs(peaks[1] - peaks[0]) < 2_000, peaks
