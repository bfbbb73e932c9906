"""mobclf eval on any model (quantized artifacts and bundles in their runtime) and on any labelled file (read as
`data prepare` reads it), with unknown labels refused by name and line or dropped and counted."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_predict import build_model_kinds

from bad_inputs import Refusal
from dataset_rows import split_rows
from mobclf.artifacts import load_artifact
from mobclf.cli import main
from mobclf.data.dataset import load_dataset
from mobclf.data.demo_corpus import generate_article_corpus
from mobclf.errors import UserError
from mobclf.stages import EvalConfig, LabelledFileOptions
from mobclf.train.evaluate import run
from mobclf.train.metrics import classification_metrics


@pytest.fixture(scope="session")
def model_kinds(students):
    return build_model_kinds(students)  # built once a session, shared with test_predict.py


def evaluate(*args) -> dict:
    """``mobclf eval ARGS --json FILE`` → the metrics it wrote."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "metrics.json"
        result = CliRunner().invoke(main, ["eval", *map(str, args), "--json", str(out)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text("utf-8"))


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


@pytest.mark.parametrize("kind", ["int8-pte", "int8-onnx"])
def test_eval_scores_a_quantized_artifact_in_its_runtime(students, model_kinds, kind):
    metrics = evaluate("--model", model_kinds[kind], "--data", students / "data", "--split", "val")
    stored = load_artifact(model_kinds[kind]).manifest["metrics"]["val"]  # quantize measured it in the runtime
    assert 0 <= metrics["micro_f1"] <= 1 and metrics["support"] == len(load_dataset(students / "data").texts("val"))
    assert metrics["micro_f1"] == stored["micro_f1"]  # the same runner: a text's answer never depends on its batch


def test_an_int8_onnx_file_answers_each_text_as_it_would_alone(students, model_kinds):
    """Dynamic INT8 quantizes activations with scales over the whole input: the runner runs such a file one text at
    a time, unpadded, so a batch gives every text exactly its answer alone (what the phone computes)."""
    from mobclf.export.onnx import OnnxRunner
    from mobclf.text import load_tokenizer

    artifact = load_artifact(model_kinds["int8-onnx"])
    runner = OnnxRunner(artifact.file("model.onnx"), 1)
    tokenizer = load_tokenizer(artifact.file("tokenizer"))
    texts = load_dataset(students / "data").texts("val")[:6] + ["短"]
    batch = tokenizer.encode_batch(texts)
    alone = [runner(encoded["input_ids"], encoded["attention_mask"])
             for encoded in (tokenizer.encode_batch([text]) for text in texts)]
    assert runner.one_at_a_time and torch.equal(runner(batch["input_ids"], batch["attention_mask"]), torch.cat(alone))


def test_eval_scores_bundles_file_by_file(students, model_kinds):
    data = ["--data", students / "data"]
    android = evaluate("--model", model_kinds["android"], *data)
    assert android == evaluate("--model", model_kinds["int8-pte"], *data)  # the very .pte, copied into the bundle
    student = load_artifact(students / "tinybert").manifest["metrics"]["test"]
    for file in ("model.pte", "model.onnx"):  # fp32 files classify like the eager student they came from
        metrics = evaluate("--model", model_kinds["all"], "--bundle-file", file, *data)
        assert abs(metrics["micro_f1"] - student["micro_f1"]) < 1e-6


def test_eval_on_a_labelled_file_equals_eval_on_the_split_it_holds(students, model_kinds, tmp_path):
    with open(tmp_path / "test.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "tags"])
        writer.writerows([text, "|".join(labels)] for text, labels in split_rows(students / "data", "test"))
    on_split = evaluate("--model", model_kinds["web"], "--data", students / "data")
    on_file = evaluate("--model", model_kinds["web"], "--file", tmp_path / "test.csv", "--text-column", "title",
                       "--label-column", "tags", "--label-sep", "|")
    assert on_file == on_split


def test_unknown_labels_are_refused_by_name_or_dropped_and_counted(students, model_kinds, tmp_path):
    rows = [{"text": text, "labels": list(labels)} for text, labels in split_rows(students / "data", "test")[:12]]
    rows[2]["labels"].append("weather")  # keeps a known label: the row stays, "weather" goes
    rows[5]["labels"] = ["weather", "crypto"]  # nothing known left: the row goes
    write_jsonl(tmp_path / "new.jsonl", rows)
    error = Refusal(["eval", "--model", model_kinds["student"], "--file", "new.jsonl"], where="new.jsonl", line=3,
                    says="'weather', 'crypto'").check(tmp_path)
    assert "--ignore-unknown-labels" in error

    metrics = evaluate("--model", model_kinds["student"], "--file", tmp_path / "new.jsonl",
                       "--ignore-unknown-labels")
    assert metrics["dropped_unknown_labels"] == {"labels": {"weather": 2, "crypto": 1}, "rows": 1}
    assert metrics["support"] == 11
    # the same scores as the kept rows and labels scored by hand, with the model's own decision
    from mobclf.bench.variants import open_model

    model = open_model(model_kinds["student"])
    kept = [row for number, row in enumerate(rows) if number != 5]
    targets = np.array([[float(label in row["labels"]) for label in model.labels] for row in kept])
    expected = classification_metrics(targets, model.decide(model.probs([row["text"] for row in kept])),
                                       model.labels)
    assert {key: metrics[key] for key in expected} == expected


def test_a_kind_refused_says_which_kinds_are_taken(students, model_kinds):
    with pytest.raises(UserError, match="is an export artifact, but a teacher, student or pruned artifact is needed "
                                        "here"):
        load_artifact(model_kinds["web"], kind=("teacher", "student", "pruned"))
    with pytest.raises(UserError, match="is a dataset artifact, but an export artifact is needed here"):
        load_artifact(students / "data", kind="export")


def test_eval_config_and_reading_options_check_their_values():
    with pytest.raises(UserError, match="--split: .dev. is not one of train, val, test"):
        EvalConfig(split="dev")
    with pytest.raises(UserError, match="--label-sep"):
        LabelledFileOptions(label_sep="")
    assert LabelledFileOptions(fmt="csv", ignore_unknown_labels=True).given() == ["--format",
                                                                                  "--ignore-unknown-labels"]


def _bad_eval_cases(students, kinds):
    student = kinds["student"]
    return {
        "data-and-file": (["eval", "--model", student, "--data", students / "data", "--file", "new.jsonl"], None,
                          None, "not both or neither"),
        "neither-data-nor-file": (["eval", "--model", student], None, None, "not both or neither"),
        "split-with-file": (["eval", "--model", student, "--file", "new.jsonl", "--split", "val"], None, None,
                            "drop --split"),
        "reading-option-with-data": (["eval", "--model", student, "--data", students / "data", "--label-sep", "|"],
                                     None, None, "--label-sep read a labelled --file"),
        "malformed-labelled-file": (["eval", "--model", student, "--file", "broken.jsonl"], "broken.jsonl", 2,
                                    "malformed JSON"),
        "no-known-label-left": (["eval", "--model", student, "--file", "alien.jsonl", "--ignore-unknown-labels"],
                                "alien.jsonl", None, "no row has a label the model knows"),
        "bundle-file-not-in-bundle": (["eval", "--model", kinds["web"], "--data", students / "data", "--bundle-file",
                                       "model.pte"], None, None, "choose one of model.onnx"),
        "a-dataset-as-the-model": (["eval", "--model", students / "data", "--data", students / "data"], None, None,
                                   "is a dataset artifact, but a teacher, student, pruned, quantized, export or "
                                   "cascade artifact is needed here"),
        "bench-unknown-label": (["bench", "--model", student, "--file", "alien.jsonl", "--out", "report"],
                                "alien.jsonl", 1, "--ignore-unknown-labels"),
    }


@pytest.mark.parametrize("name", ["data-and-file", "neither-data-nor-file", "split-with-file",
                                  "reading-option-with-data", "malformed-labelled-file", "no-known-label-left",
                                  "bundle-file-not-in-bundle", "a-dataset-as-the-model", "bench-unknown-label"])
def test_bad_eval_input_is_one_line(students, model_kinds, tmp_path, name):
    write_jsonl(tmp_path / "new.jsonl", [{"text": "国足客场逼平对手", "labels": ["sports"]}])
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "labels": ["sports"]}\n{"text": "b", "labels": \n',
                                           encoding="utf-8")
    write_jsonl(tmp_path / "alien.jsonl", [{"text": "明日多云转晴", "labels": ["weather"]}])
    args, where, line, says = _bad_eval_cases(students, model_kinds)[name]
    Refusal(args, where=where, line=line, says=says).check(tmp_path)
    assert not (tmp_path / "report").exists()


def test_run_takes_exactly_one_source(model_kinds):
    with pytest.raises(UserError, match="not both or neither"):
        run(EvalConfig(), model_kinds["student"])


def test_hundreds_of_labels_print_the_head_the_tail_and_a_summary(tmp_path):
    """605 labels with a long tail: eval's per-label table is the 10 most frequent and the 10 rarest labels and a
    count of the rest, not 605 rows; --json keeps every label."""
    generate_article_corpus(tmp_path / "articles.jsonl", 1500, n_labels=605, seed=2)
    runner = CliRunner()
    assert runner.invoke(main, ["data", "prepare", str(tmp_path / "articles.jsonl"), "--out",
                                str(tmp_path / "data")]).exit_code == 0
    result = runner.invoke(main, ["train-teacher", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "t"),
                                  "--layers", "1", "--hidden", "32", "--heads", "2", "--max-length", "48",
                                  "--epochs", "1"])
    assert result.exit_code == 0, result.output
    labels = load_dataset(tmp_path / "data").labels
    result = runner.invoke(main, ["eval", "--model", str(tmp_path / "t"), "--data", str(tmp_path / "data"),
                                  "--json", str(tmp_path / "eval.json")], terminal_width=200)
    assert result.exit_code == 0, result.output
    present = [row for row in json.loads((tmp_path / "eval.json").read_text("utf-8"))["per_label"] if row["support"]]
    printed = [label for label in labels if f" {label} " in result.output]
    assert len(printed) == 20 and f"… {len(present) - 20} more …" in result.output
    assert f"{len(labels)} labels: the 10 most and the 10 least frequent here" in " ".join(result.output.split())
    assert len(json.loads((tmp_path / "eval.json").read_text("utf-8"))["per_label"]) == len(labels)
