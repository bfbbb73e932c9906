"""mobclf predict: every model kind and bundle answers as it does in its own runtime (eager, ExecuTorch .pte,
onnxruntime .onnx), from arguments, stdin, JSONL, CSV/TSV and plain text; an empty text gets the empty input's
answer; bad input is one line naming the file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import run
from rich.console import Console

from bad_inputs import Refusal
from mobclf.artifacts import load_artifact
from mobclf.cli import main
from mobclf.data.dataset import load_dataset
from mobclf.export.executorch import PteRunner
from mobclf.export.exportable import min_length
from mobclf.export.onnx import OnnxRunner
from mobclf.models import build_model, load_classifier
from mobclf.predict import table
from mobclf.stages import PredictConfig
from mobclf.text import load_tokenizer
from mobclf.train.classifier import predict_probs
from mobclf.train.thresholds import predict_labels

PARITY = ["--parity-texts", "20", "--min-agreement", "0.5"]  # tiny models: many probabilities near a threshold


def _build(students: Path, name: str, *args) -> Path:
    """``students/name`` made by ``mobclf args... --out students/name`` once per session (test modules share it)."""
    out = students / name
    if not out.exists():
        result = run(*args, "--out", out)
        assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def model_kinds(students) -> dict[str, Path]:
    return build_model_kinds(students)


def build_model_kinds(students: Path) -> dict[str, Path]:
    """Every kind of model predict takes: teacher, fp32 student, INT8 .pte and .onnx quantized artifacts, an android
    bundle (the INT8 .pte), a web bundle (fp32 .onnx) and a bundle with both files (each built once a session)."""
    data = ["--data", students / "data"]
    kinds = {"teacher": students / "teacher", "student": students / "textcnn"}
    kinds["int8-pte"] = _build(students, "predict-int8-pte", "quantize", "--from", students / "textcnn", *data,
                               "--calibration", "32", *PARITY)
    kinds["int8-onnx"] = _build(students, "predict-int8-onnx", "quantize", "--from", students / "tinybert", *data,
                                "--runtime", "onnx", "--scheme", "dynamic", "--calibration", "32", *PARITY)
    kinds["android"] = _build(students, "predict-android", "export", "--from", kinds["int8-pte"], "--target",
                              "android", *PARITY)
    kinds["web"] = _build(students, "predict-web", "export", "--from", students / "textcnn", "--target", "web",
                          *PARITY)
    kinds["all"] = _build(students, "predict-all", "export", "--from", students / "tinybert", "--target", "all",
                          *PARITY)
    return kinds


def texts_of(students, n: int = 10) -> list[str]:
    return load_dataset(students / "data").texts("val")[:n]


def reference(model_dir: Path, texts: list[str], file: str | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Probabilities and choices the model's own path gives, without mobclf.predict: eager ``predict_probs`` for
    weights; the ExecuTorch / onnxruntime runner for files, one text at a time; the thresholds and decision rule of
    its manifest or bundle.json (``predict_labels``)."""
    artifact = load_artifact(model_dir)
    manifest = artifact.manifest
    tokenizer = load_tokenizer(model_dir / "tokenizer")
    if artifact.kind == "export":
        bundle = json.loads((model_dir / "bundle.json").read_text("utf-8"))
        described = list(bundle["model"]["files"].values())
        path = model_dir / (file or described[0]["file"])
        shortest, thresholds = bundle["inputs"]["min_length"], bundle["thresholds"]
        single_label = bundle["output"]["decision"] == "argmax"
    else:
        shortest, thresholds, single_label = None, manifest["thresholds"], not manifest["multi_label"]
        if artifact.kind == "quantized":
            path = model_dir / manifest["quantization"]["file"]
            shortest = min_length(build_model(manifest["architecture"]))
    if shortest is None:
        probs = predict_probs(load_classifier(artifact), tokenizer, texts)
    else:
        runner = PteRunner(path, shortest) if path.suffix == ".pte" else OnnxRunner(path, shortest)
        encoded = [tokenizer.encode_batch([text]) for text in texts]  # one text at a time, as the phone runs it
        probs = torch.sigmoid(torch.cat([runner(one["input_ids"], one["attention_mask"]) for one in encoded])).numpy()
    return probs, predict_labels(probs, np.asarray(thresholds), single_label), artifact.labels


def check_agrees(records: list[dict], model_dir: Path, texts: list[str], file: str | None = None) -> None:
    probs, chosen, labels = reference(model_dir, texts, file)
    assert [record["text"] for record in records] == texts
    for record, row, picks in zip(records, probs, chosen):
        assert set(record["labels"]) == {label for label, pick in zip(labels, picks) if pick}
        assert set(record["probabilities"]) == set(labels)
        for label, p in record["probabilities"].items():
            assert abs(p - row[labels.index(label)]) < 2e-6
        values = list(record["probabilities"].values())
        assert values == sorted(values, reverse=True)


def predict(*args, stdin: str | bytes | None = None):
    result = CliRunner().invoke(main, ["predict", *map(str, args)], input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("kind", ["teacher", "student", "int8-pte", "int8-onnx", "android", "web"])
def test_predict_agrees_with_the_model_in_its_own_runtime(students, model_kinds, kind):
    texts = [*texts_of(students), ""]  # "" gets what the model answers for the tokenizer's empty encoding
    records = predict("--model", model_kinds[kind], *texts)
    check_agrees(records, model_kinds[kind], texts)
    alone = predict("--model", model_kinds[kind], "")
    assert alone[0]["labels"] == records[-1]["labels"] and alone[0]["labels"]


def test_a_bundle_runs_the_file_chosen_with_file(students, model_kinds):
    texts = texts_of(students, 6)
    bundle = model_kinds["all"]
    first = predict("--model", bundle, *texts)
    check_agrees(first, bundle, texts, "model.pte")
    onnx = predict("--model", bundle, "--bundle-file", "model.onnx", *texts)
    check_agrees(onnx, bundle, texts, "model.onnx")


def test_texts_from_stdin_jsonl_csv_tsv_and_plain_text_give_the_same_records(students, model_kinds, tmp_path):
    texts = [*texts_of(students, 5), "", "a \"quoted\", comma text"]
    model = model_kinds["student"]
    expected = predict("--model", model, *texts)
    check_agrees(expected, model, texts)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t, "id": i}, ensure_ascii=False) + "\n\n"
                                               for i, t in enumerate(texts)), encoding="utf-8")
    (tmp_path / "in.csv").write_text("id,title\n" + "".join(f'{i},"{t.replace(chr(34), chr(34) * 2)}"\r\n'
                                                            for i, t in enumerate(texts)), encoding="utf-8")
    (tmp_path / "in.tsv").write_text("title\tid\n" + "".join(f"{t}\t{i}\n" for i, t in enumerate(texts)),
                                     encoding="utf-8")
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    plain = "\n".join(texts) + "\n"
    assert predict("--model", model, "--input", tmp_path / "in.jsonl") == expected
    assert predict("--model", model, "--input", tmp_path / "in.csv", "--text-column", "title") == expected
    assert predict("--model", model, "--input", tmp_path / "in.tsv", "--text-column", "title") == expected
    assert predict("--model", model, "--input", tmp_path / "in.txt") == expected
    assert predict("--model", model, stdin=plain) == expected
    assert predict("--model", model, "--input", "-", stdin=plain.encode("utf-8")) == expected
    assert predict("--model", model, "--format", "jsonl",
                   stdin=(tmp_path / "in.jsonl").read_text("utf-8")) == expected
    # a longer file than one batch, through the progress bar: same records, in order
    many = [text for _ in range(3) for text in texts]
    (tmp_path / "many.txt").write_text("\n".join(many), encoding="utf-8")
    assert predict("--model", model, "--input", tmp_path / "many.txt", "--batch-size", "4") == expected * 3


def test_top_k_output_file_and_force(students, model_kinds, tmp_path):
    texts = texts_of(students, 3)
    model = model_kinds["int8-onnx"]
    top = predict("--model", model, "--top-k", "2", *texts)
    full = predict("--model", model, *texts)
    for short, whole in zip(top, full):
        assert short["labels"] == whole["labels"]
        assert list(short["probabilities"].items()) == list(whole["probabilities"].items())[:2]
    out = tmp_path / "predictions.jsonl"
    assert predict("--model", model, "--output", out, *texts) == []
    assert [json.loads(line) for line in out.read_text("utf-8").splitlines()] == full
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no partial file left behind
    predict("--model", model, "--output", out, "--force", "--top-k", "1", texts[0])
    assert [json.loads(line) for line in out.read_text("utf-8").splitlines()] == [
        {**full[0], "probabilities": dict(list(full[0]["probabilities"].items())[:1])}]


def test_a_terminal_gets_a_table(students, model_kinds):
    from mobclf.predict import run as predict_run

    records = predict_run(PredictConfig(top_k=3), model_kinds["web"], ["[bold]not markup[/bold]", ""])
    console = Console(record=True, width=120)
    console.print(table(records))
    shown = console.export_text()
    assert "[bold]not markup[/bold]" in shown and "(empty)" in shown
    assert all(label in shown for label in records[0]["labels"])


def test_predict_config_checks_its_values():
    from mobclf.errors import UserError

    with pytest.raises(UserError, match="--top-k"):
        PredictConfig(top_k=0)
    with pytest.raises(UserError, match="--batch-size"):
        PredictConfig(batch_size=0)


BAD_INPUTS = {
    "jsonl-malformed-line": ({"in.jsonl": b'{"text": "a"}\n{"text": "b"}\n{"text": \n'},
                             ["--input", "in.jsonl"], "in.jsonl", 3, "malformed JSON"),
    "jsonl-missing-text-field": ({"in.jsonl": b'{"text": "a"}\n{"title": "b"}\n'},
                                 ["--input", "in.jsonl"], "in.jsonl", 2, "--text-column"),
    "jsonl-text-not-a-string": ({"in.jsonl": b'{"text": "a"}\n\n{"text": 3}\n'},
                                ["--input", "in.jsonl"], "in.jsonl", 3, "must be a string"),
    "csv-no-text-column": ({"in.csv": b"id,title\n1,a\n"}, ["--input", "in.csv"], "in.csv", 1, "--text-column"),
    "csv-wrong-field-count": ({"in.csv": b"id,text\n1,a\n2,b,c\n"}, ["--input", "in.csv"], "in.csv", 3,
                              "quote fields"),
    "txt-invalid-utf8": ({"in.txt": b"fine\n\xff\xfe broken\n"}, ["--input", "in.txt"], "in.txt", 2,
                         "invalid UTF-8"),
    "empty-file": ({"in.txt": b""}, ["--input", "in.txt"], "in.txt", None, "no texts"),
    "unknown-extension": ({"in.dat": b"x\n"}, ["--input", "in.dat"], "in.dat", None, "--format"),
    "missing-input-file": ({}, ["--input", "nope.txt"], "nope.txt", None, "cannot read the file"),
    "stdin-invalid-utf8": ({}, [], "<stdin>", 2, "invalid UTF-8"),
    "output-exists": ({"out.jsonl": b"keep me\n"}, ["--output", "out.jsonl", "some text"], "out.jsonl", None,
                      "--force"),
    "text-and-input": ({"in.txt": b"a\n"}, ["--input", "in.txt", "more"], None, None, "not both"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_predict_input_is_one_line_naming_file_and_line(model_kinds, tmp_path, name):
    files, args, where, line, says = BAD_INPUTS[name]
    for file, content in files.items():
        (tmp_path / file).write_bytes(content)
    env = None
    case = Refusal(["predict", "--model", model_kinds["student"], *args], where=where, line=line, says=says)
    if name == "stdin-invalid-utf8":
        before = {}
        result = CliRunner().invoke(main, [str(arg) for arg in case.args], input=b"ok\n\xff\n", env=env)
        case.judge(result.exit_code, result.stderr, repr(result.exception), before, before)
    else:
        case.check(tmp_path, env)


def test_a_model_predict_cannot_open_is_refused(students, model_kinds, tmp_path):
    Refusal(["predict", "--model", "nowhere", "text"], where="nowhere").check(tmp_path)
    Refusal(["predict", "--model", students / "data", "text"], says="is a dataset artifact, but a teacher, student, "
            "pruned, quantized, export or cascade artifact is needed here").check(tmp_path)
    Refusal(["predict", "--model", model_kinds["student"], "--bundle-file", "model.pte", "text"],
            says="export bundles").check(tmp_path)
    Refusal(["predict", "--model", model_kinds["web"], "--bundle-file", "model.pte", "text"],
            says="choose one of model.onnx").check(tmp_path)
