"""INT8 quantization for ExecuTorch (PT2E, XNNPACK) and ONNX (onnxruntime), run in the real runtimes, on tiny
distilled students."""

from __future__ import annotations

from dataclasses import astuple

import pytest
import torch
from click.testing import CliRunner
from conftest import run

from mobclf.artifacts import load_artifact
from mobclf.cli import main
from mobclf.compress.quantize import Attempt, Int8Embedding, escalation
from mobclf.export.executorch import PteRunner, to_pte
from mobclf.export.exportable import ExportableClassifier, min_length
from mobclf.export.onnx import OnnxRunner, export_onnx
from mobclf.models import load_classifier
from mobclf.stages import QuantizeConfig
from mobclf.text import load_tokenizer


def encode(artifact_dir, texts):
    tokenizer = load_tokenizer(artifact_dir / "tokenizer")
    batch = tokenizer.encode_batch(texts)
    return batch["input_ids"], batch["attention_mask"]


@pytest.mark.parametrize("student, runtime, scheme, model_file", [
    ("textcnn", "executorch", "static", "model.pte"),
    ("tinybert", "executorch", "dynamic", "model.pte"),
    ("textcnn", "onnx", "static", "model.onnx"),
    ("tinybert", "onnx", "dynamic", "model.onnx"),
])
def test_quantized_students_run_in_their_runtime_and_agree_with_fp32(students, tmp_path, student, runtime, scheme,
                                                                     model_file):
    out = students / f"{student}-{runtime}-{scheme}"
    result = run("quantize", "--from", students / student, "--data", students / "data", "--out", out,
                 "--runtime", runtime, "--scheme", scheme, "--calibration", "64", "--min-agreement", "0.8")
    assert result.exit_code == 0, result.output
    artifact = load_artifact(out, kind="quantized")
    manifest = artifact.manifest
    parent = load_artifact(students / student)
    assert manifest["quantization"]["file"] == model_file and (out / model_file).is_file()
    assert len(manifest["quantization"]["calibration"]["rows"]) == 64
    [attempt] = manifest["quantization"]["attempts"]  # the first way passed: nothing else was tried
    assert attempt["passed"] and attempt["label_set_agreement"] == manifest["parity"][model_file]["label_set_agreement"]
    assert manifest["thresholds"] == parent.manifest["thresholds"]
    assert manifest["lineage"]["parents"][0]["sha256"] == parent.sha256
    for split in ("val", "test"):
        assert manifest["metrics"]["agreement_with_fp32"][split] > 0.8
        assert abs(manifest["metrics"]["agreement_with_teacher"][split]
                   - parent.manifest["metrics"]["agreement_with_teacher"][split]) < 0.1
        assert abs(manifest["metrics"][split]["micro_f1"] - parent.manifest["metrics"][split]["micro_f1"]) < 0.1
    # smaller than the same model exported in fp32 (tiny models: the graph itself is a good part of the file)
    model = load_classifier(parent)
    if runtime == "executorch":
        fp32_size = len(to_pte(ExportableClassifier(model), 40).pte)
    else:
        fp32_size = export_onnx(model, 40, tmp_path / "fp32.onnx").stat().st_size
    assert manifest["quantization"]["size_bytes"] == (out / model_file).stat().st_size < 0.8 * fp32_size

    # the stored file runs on the shortest and the longest input, close to the fp32 model
    runner_type = PteRunner if runtime == "executorch" else OnnxRunner
    runner = runner_type(out / model_file, min_length(model))
    texts = ["球", "央行宣布下调存款准备金率 股市大涨 " * 10]
    ids, mask = encode(out, texts)
    assert ids.shape[1] == parent.manifest["tokenizer"]["max_length"]
    quantized, fp32 = torch.sigmoid(runner(ids, mask)), torch.sigmoid(model(ids, mask))
    assert quantized.shape == fp32.shape == (2, len(parent.labels))
    assert (quantized - fp32).abs().max() < 0.15


def test_fp32_pte_matches_eager_for_short_and_max_length_input(students):
    model = load_classifier(load_artifact(students / "tinybert"))
    lowered = to_pte(ExportableClassifier(model), 40)
    assert lowered.delegated and "aten_linear_default" in lowered.delegated
    runner = PteRunner(lowered.pte, min_length(model))
    for length in (1, 7, 40):
        ids = torch.randint(5, 50, (1, length))
        mask = torch.ones_like(ids)
        torch.testing.assert_close(runner(ids, mask), model(ids, mask), atol=1e-5, rtol=1e-4)


def test_int8_embedding_rows_are_within_half_a_step_of_the_table():
    table = torch.randn(50, 16)
    embedding = Int8Embedding(table)
    ids = torch.arange(50)
    step = table.abs().amax(dim=1, keepdim=True) / 127
    assert embedding.quantized.dtype == torch.int8
    assert torch.all((embedding(ids) - table).abs() <= step / 2 + 1e-6)


@pytest.mark.parametrize("args, message", [
    (["--scheme", "weekly"], "Invalid value for '--scheme'"),
    (["--calibration", "0"], "Invalid value for '--calibration'"),
])
def test_bad_quantize_options_are_one_line_errors(students, tmp_path, args, message):
    result = CliRunner().invoke(main, ["quantize", "--from", str(students / "textcnn"), "--data",
                                       str(students / "data"), "--out", str(tmp_path / "q"), *args])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "q").exists()


def test_a_file_export_would_refuse_is_refused_when_quantized(students, tmp_path):
    """quantize runs export's parity check first: with a tolerance no INT8 file meets and no escalation, it stops in
    one line, with what to try, and writes nothing."""
    result = CliRunner().invoke(main, ["quantize", "--from", str(students / "textcnn"), "--data",
                                       str(students / "data"), "--calibration", "16", "--parity-texts", "30",
                                       "--max-prob-diff", "0", "--no-escalate", "--out", str(tmp_path / "q")])
    assert result.exit_code == 2 and "as `mobclf export` checks it, at best; nothing was written" in result.output
    assert "without --no-escalate" in result.output and "--accept-parity-failure" in result.output
    assert not (tmp_path / "q").exists()


def test_quantize_escalates_until_nothing_is_left_and_records_every_attempt(students, tmp_path):
    """No file meets a zero tolerance: every way is tried (each change made to the attempt that agreed best so far),
    each recorded with its agreement; --accept-parity-failure keeps the best, marked as failed."""
    out = tmp_path / "q"
    result = CliRunner().invoke(main, ["quantize", "--from", str(students / "textcnn"), "--data",
                                       str(students / "data"), "--calibration", "16", "--parity-texts", "30",
                                       "--max-prob-diff", "0", "--qat-epochs", "1", "--accept-parity-failure",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = load_artifact(out, kind="quantized").manifest
    quantization, certificate = manifest["quantization"], manifest["parity"]["model.pte"]
    attempts = quantization["attempts"]
    assert [attempt["passed"] for attempt in attempts] == [False] * 5
    assert attempts[0]["attempt"] == "static, 16 calibration texts, int8 embeddings"
    assert attempts[1]["calibration_size"] == 64 and attempts[2]["fp32_layers"] == ["classifier"]
    assert attempts[3]["qat_epochs"] == 1 and attempts[4]["embedding"] == "fp32"
    best = max(attempts, key=lambda attempt: attempt["label_set_agreement"])
    assert certificate["passed"] is False and certificate["label_set_agreement"] == best["label_set_agreement"]
    assert (quantization["scheme"], quantization["calibration_size"], quantization["embedding"]) == (
        best["scheme"], best["calibration_size"], best["embedding"])
    assert quantization["size_bytes"] == (out / "model.pte").stat().st_size == best["size_bytes"]
    assert len(quantization["calibration"]["rows"]) == best["calibration_size"]


@pytest.mark.parametrize("student, runtime, scheme, changed", [
    ("textcnn", "executorch", "static", [("static", 1024, "int8", (), 0), ("static", 256, "int8", ("classifier",), 0),
                                         ("static", 256, "int8", (), 3), ("static", 256, "fp32", (), 0)]),
    ("tinybert", "executorch", "dynamic", [("dynamic", 256, "int8", ("head.1",), 0), ("static", 256, "int8", (), 3),
                                           ("dynamic", 256, "fp32", (), 0)]),
    ("tinybert", "onnx", "static", [("static", 1024, "int8", (), 0), ("dynamic", 256, "int8", (), 0)]),
])
def test_the_escalation_tries_what_the_model_and_the_runtime_allow(students, student, runtime, scheme, changed):
    """Each change of the escalation, applied to the first attempt: TextCNN never goes dynamic (XNNPACK quantizes no
    convolution per call), ONNX has no QAT; the output layer is found by name."""
    model = load_classifier(load_artifact(students / student))
    config = QuantizeConfig(runtime=runtime, scheme=scheme)
    first = Attempt(scheme, 256, "int8")
    assert [astuple(change(first)) for change in escalation(config, model, train_texts=1000)] == changed
    # never more calibration texts than the training split has
    assert all(change(first).calibration_size == 256 for change in escalation(config, model, train_texts=256))


def test_a_teacher_is_not_quantized_and_textcnn_has_no_dynamic_scheme(students, tmp_path):
    result = CliRunner().invoke(main, ["quantize", "--from", str(students / "teacher"), "--data",
                                       str(students / "data"), "--out", str(tmp_path / "q")])
    assert result.exit_code != 0 and "teacher" in result.output and "student" in result.output
    result = CliRunner().invoke(main, ["quantize", "--from", str(students / "textcnn"), "--data",
                                       str(students / "data"), "--out", str(tmp_path / "q"), "--scheme", "dynamic"])
    assert result.exit_code != 0 and "--scheme static" in result.output
    assert not (tmp_path / "q").exists()


def test_a_pruned_tinybert_lowers_to_pte_in_fp32_and_int8(students):
    """Pruned heads and FFN channels (geometry rebuilt from the manifest) survive export, PT2E and XNNPACK."""
    result = run("prune", "--from", students / "tinybert", "--data", students / "data", "--out",
                 students / "tinybert-pruned", "--ratio", "0.5", "--recovery-epochs", "0")
    assert result.exit_code == 0, result.output
    model = load_classifier(load_artifact(students / "tinybert-pruned", kind="pruned"))
    assert model.config["layer_heads"] == [1]
    runner = PteRunner(to_pte(ExportableClassifier(model), 40).pte, min_length(model))
    ids, mask = encode(students / "tinybert-pruned", ["央行宣布降息", "国足客场战平对手 " * 8])
    torch.testing.assert_close(runner(ids, mask), model(ids, mask), atol=1e-5, rtol=1e-4)
    result = run("quantize", "--from", students / "tinybert-pruned", "--data", students / "data", "--out",
                 students / "tinybert-pruned-int8", "--calibration", "32", "--min-agreement", "0.8")
    assert result.exit_code == 0, result.output
    metrics = load_artifact(students / "tinybert-pruned-int8", kind="quantized").manifest["metrics"]
    assert metrics["agreement_with_fp32"]["val"] > 0.8
