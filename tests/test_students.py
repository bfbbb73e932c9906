"""The source studies' other students (DPCNN, FastText, TextRNN, CNN-BiLSTM-attention), each through the whole
pipeline on tiny data: distilled with every loss, exported to .pte and .onnx with a parity certificate, replayed
through the Java tokenizer and post-processing, and quantized to an INT8 .pte that passes the export guard."""

from __future__ import annotations

import pytest
import torch
from bundles import assert_java_ids_through_the_pte_give_mobclf_labels, check_bundle
from conftest import chance_micro_f1, run

from mobclf.artifacts import load_artifact
from mobclf.models import build_model, load_classifier

GEOMETRY = {  # recurrent students at 12 tokens: their exported loop unrolls over every position
    "dpcnn": ["--filters", "16", "--blocks", "2"],  # two halvings: as the recipes, whose export once failed
    "fasttext": ["--ngrams", "2,3", "--buckets", "2000", "--dropout", "0.1"],
    "textrnn": ["--cell", "gru", "--hidden", "16", "--max-length", "12"],
    "bilstm-attn": ["--hidden", "16", "--conv-filters", "16", "--attention-dim", "8", "--max-length", "12"],
}
CONFIG = {"vocab_size": 40, "embedding_dim": 8, "dropout": 0.0, "num_labels": 3, "max_length": 12}
MODELS = {"dpcnn": {"num_filters": 8, "blocks": 1}, "fasttext": {"ngrams": [2, 3], "buckets": 31},
          "textrnn": {"cell": "gru", "hidden": 8, "pooling": "last"},
          "textrnn-mean": {"cell": "lstm", "hidden": 8, "pooling": "mean"},
          "bilstm_attn": {"hidden": 8, "conv_kernel": 3, "conv_filters": 8, "attention_dim": 4}}


@pytest.mark.parametrize("name", list(MODELS))
def test_padding_changes_no_logits_and_the_exported_recurrence_is_the_trained_one(name):
    torch.manual_seed(0)
    model = build_model({"name": name.removesuffix("-mean"), "config": {**CONFIG, **MODELS[name]}}).eval()
    lengths = [12, 7, 3, 1]
    mask = (torch.arange(12)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(1, 40, (4, 12)) * mask
    batch = model(ids, mask)
    for row, length in enumerate(lengths):
        alone = model(ids[row:row + 1, :length], mask[row:row + 1, :length])
        torch.testing.assert_close(batch[row:row + 1], alone, atol=1e-5, rtol=1e-5)
    if hasattr(model, "recurrence"):  # packed nn.LSTM/GRU in training; the unrolled loop torch.export captures
        sequence = torch.randn(4, 12, model.recurrence.rnn.input_size)
        torch.testing.assert_close(model.recurrence(sequence, mask), model.recurrence.unrolled(sequence, mask),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("student", list(GEOMETRY))
def test_student_distils_exports_replays_on_the_jvm_and_quantizes(students, device_cli, tmp_path, student):
    model_dir = tmp_path / student
    result = run("distill", student, "--teacher", students / "teacher", "--data", students / "data", "--out",
                 model_dir, "--loss", "soft_kd=1", "--loss", "hard_bce=1", "--loss", "hint_mse=1", "--loss",
                 "attention_transfer=1", "--intermediate-epochs", "1", "--embedding-dim", "32", "--epochs", "8",
                 "--lr", "5e-3", "--batch-size", "32", *GEOMETRY[student])
    assert result.exit_code == 0, result.output
    manifest = load_artifact(model_dir, kind="student").manifest
    assert manifest["architecture"]["name"] == student.replace("-", "_")
    assert manifest["metrics"]["test"]["micro_f1"] > chance_micro_f1(students / "data") + 0.1
    matches = [(m["loss"], m["student"]) for m in manifest["distillation"]["plan"]["matches"]]
    assert ("hint_mse", "features") in matches and ("attention_transfer", "attention_map") in matches

    bundle_dir = tmp_path / f"bundle-{student}"
    result = run("export", "--from", model_dir, "--target", "all", "--out", bundle_dir, "--parity-texts", "50")
    assert result.exit_code == 0, result.output
    bundle = check_bundle(bundle_dir, model_dir, ["executorch", "onnx"])
    recurrent = student in ("textrnn", "bilstm-attn")
    assert bundle["inputs"]["min_length"] == (12 if recurrent else 4 if student == "fasttext" else 40)  # DPCNN: max
    assert "aten_linear_default" in bundle["model"]["files"]["executorch"]["delegated_ops"]
    assert_java_ids_through_the_pte_give_mobclf_labels(model_dir, bundle_dir, students / "data", device_cli,
                                                       tmp_path)

    quantized = tmp_path / f"{student}-int8"
    result = run("quantize", "--from", model_dir, "--data", students / "data", "--out", quantized,
                 "--calibration", "32", "--parity-texts", "50", "--min-agreement", "0.9")
    assert result.exit_code == 0, result.output
    manifest = load_artifact(quantized, kind="quantized").manifest
    assert manifest["parity"]["model.pte"]["passed"] and manifest["parity"]["model.pte"]["label_set_agreement"] >= 0.9
    # a recurrence: int8 linears, fp32 steps (a statically quantized unrolled loop does not lower to XNNPACK)
    assert manifest["quantization"]["scheme"] == ("dynamic" if recurrent else "static")
    assert isinstance(load_classifier(load_artifact(quantized)), type(load_classifier(load_artifact(model_dir))))
