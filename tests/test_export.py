"""mobclf export: device bundles of tiny students (fp32 and INT8, .pte and .onnx) with their parity certificate."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from bundles import check_bundle
from conftest import run

import mobclf
from mobclf.artifacts import load_artifact, sha256_file
from mobclf.bench.report import markdown
from mobclf.bench.variants import variants_of
from mobclf.cli import main
from mobclf.errors import UserError
from mobclf.export.executorch import (PteRunner, XnnpackLayerNorm, check_lengths_kept, export_program, to_pte,
                                         with_xnnpack_layer_norms)
from mobclf.export.exportable import ExportableClassifier, min_length
from mobclf.models import load_classifier
from mobclf.models.textcnn import TextCNN

@pytest.mark.parametrize("student", ["textcnn", "tinybert"])
def test_fp32_students_export_to_pte_and_onnx_with_a_parity_certificate(students, student):
    out = students / f"bundle-{student}"
    result = run("export", "--from", students / student, "--target", "all", "--out", out, "--parity-texts", "50",
                 "--ort")
    assert result.exit_code == 0, result.output
    bundle = check_bundle(out, students / student, ["executorch", "onnx", "onnx"])
    assert bundle["model"]["files"]["onnx-ort"]["file"] == "model.ort"
    pte = bundle["model"]["files"]["executorch"]
    assert pte["precision"] == "fp32" and "aten_linear_default" in pte["delegated_ops"]
    if student == "tinybert":  # LayerNorm and the reshapes around attention run in XNNPACK, not between its parts
        layers = load_classifier(load_artifact(students / student)).bert.config.num_hidden_layers
        assert "aten_native_layer_norm_default" not in pte["portable_ops"]
        assert pte["portable_ops"].get("aten_view_copy_default", 0) <= 2 * layers  # the [1, heads, L, L] scores
    for certificate in bundle["parity"]["files"].values():
        assert certificate["label_set_agreement"] == 1.0 and certificate["max_abs_prob_difference"] < 1e-5
    # the .onnx carries no exporter debugging records (Python stacks naming this machine's paths)
    graph = onnx.load(str(out / "model.onnx")).graph
    assert not any(item.metadata_props for item in [*graph.node, *graph.value_info, *graph.input, *graph.output])
    assert str(Path(mobclf.__file__).parent).encode() not in (out / "model.onnx").read_bytes()


def test_the_layer_norm_xnnpack_runs_gives_nn_layer_norms_values():
    norm = torch.nn.LayerNorm(48, eps=1e-12)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    states = torch.randn(1, 7, 48) * 3 + 1
    assert torch.allclose(XnnpackLayerNorm(norm)(states), norm(states), atol=1e-5)
    assert isinstance(with_xnnpack_layer_norms(torch.nn.Sequential(norm))[0], XnnpackLayerNorm)


def test_a_wide_textcnn_exports_for_its_whole_max_length():
    """Tracing Conv1d with mkldnn on narrowed the .pte's inputs of a 128-wide TextCNN to 157 of its 256 tokens."""
    model = TextCNN({"vocab_size": 50, "embedding_dim": 128, "kernel_sizes": [2, 3, 4], "num_filters": 16,
                     "dropout": 0.0, "num_labels": 3}).eval()
    runner = PteRunner(to_pte(ExportableClassifier(model), 256).pte, min_length(model))
    ids = torch.randint(1, 50, (1, 256))
    assert torch.allclose(runner(ids, torch.ones_like(ids)), model(ids, torch.ones_like(ids)), atol=1e-4)


def test_a_program_whose_lowering_narrowed_its_lengths_is_refused():
    def exported(longest: int) -> torch.export.ExportedProgram:
        return export_program(ExportableClassifier(TextCNN({"vocab_size": 9, "embedding_dim": 4, "kernel_sizes": [2],
                                                            "num_filters": 2, "dropout": 0.0, "num_labels": 2})),
                               5, longest)

    check_lengths_kept(exported(64), exported(64))
    with pytest.raises(UserError, match="narrowed the input length from 64 to 40 tokens"):
        check_lengths_kept(exported(64), exported(40))


def test_an_int8_student_exports_its_quantized_file_for_android(students):
    quantized = students / "textcnn-int8-for-export"
    assert run("quantize", "--from", students / "textcnn", "--data", students / "data", "--out", quantized,
               "--calibration", "32", "--parity-texts", "50", "--min-agreement", "0.9").exit_code == 0
    out = students / "bundle-int8"
    result = run("export", "--from", quantized, "--target", "android", "--out", out, "--parity-texts", "50",
                 "--min-agreement", "0.9")  # a tiny model has many probabilities near its thresholds
    assert result.exit_code == 0, result.output
    bundle = check_bundle(out, quantized, ["executorch"])
    assert bundle["model"]["files"]["executorch"]["precision"] == "int8"
    assert sha256_file(out / "model.pte") == sha256_file(quantized / "model.pte")
    # quantize ran export's own parity check: the same texts, the same certificate
    assert load_artifact(quantized).manifest["parity"]["model.pte"] == bundle["parity"]["files"]["model.pte"]

    # a tolerance the int8 file cannot meet: export fails and writes nothing; --force replaces a bundle but never
    # swaps a failing one in for a good one; --accept-parity-failure writes it marked as failed, and bench flags it
    strict = ["export", "--from", quantized, "--target", "android", "--parity-texts", "50", "--max-prob-diff", "0"]
    result = run(*strict, "--out", students / "bundle-strict")
    assert result.exit_code == 2 and "disagrees with the fp32 model" in result.output
    assert "--accept-parity-failure" in result.output and "(needs ≤ 0)" in result.output
    assert not (students / "bundle-strict").exists()
    good = sha256_file(out / "manifest.json")
    assert run(*strict, "--out", out, "--force").exit_code == 2
    assert sha256_file(out / "manifest.json") == good
    assert run(*strict, "--out", students / "bundle-strict", "--accept-parity-failure").exit_code == 0
    bundle = json.loads((students / "bundle-strict" / "bundle.json").read_text("utf-8"))
    assert bundle["parity"]["files"]["model.pte"]["passed"] is False
    [failed] = variants_of(load_artifact(students / "bundle-strict"))
    assert failed.parity_passed is False and variants_of(load_artifact(out))[0].parity_passed is True
    row = {"name": failed.name, "runtime": "executorch", "precision": "int8", "micro_f1": 0.5, "macro_f1": 0.5,
           "agreement_with_teacher": None, "size_bytes": 1, "params": 1, "latency_ms_p50": 1.0,
           "latency_ms_p95": 1.0, "throughput_per_s": 1.0, "peak_rss_mb": None, "timings": [],
           "parity_passed": False}
    assert "parity FAILED" in markdown({"dataset": "d", "split": "test", "baseline": None, "rows": [row]})


def test_an_int8_file_for_one_runtime_is_not_shipped_as_fp32_for_the_other(students, tmp_path):
    quantized = tmp_path / "textcnn-int8-onnx"
    assert run("quantize", "--from", students / "textcnn", "--data", students / "data", "--out", quantized,
               "--runtime", "onnx", "--scheme", "dynamic", "--accept-parity-failure").exit_code == 0
    for target in ("android", "all"):
        result = CliRunner().invoke(main, ["export", "--from", str(quantized), "--target", target, "--out",
                                           str(tmp_path / "b")])
        assert result.exit_code == 2 and "is INT8 for onnx only, so its model.pte would be fp32" in result.output
        assert "--target onnx or web" in result.output and str((students / "textcnn").resolve()) in result.output
        assert not (tmp_path / "b").exists()


def test_export_refuses_a_teacher_and_a_foreign_dataset(students, tmp_path):
    result = run("export", "--from", students / "teacher", "--out", tmp_path / "b")
    assert result.exit_code != 0 and "teacher artifact" in result.output
    assert not (tmp_path / "b").exists()
    rows = [{"text": f"第{i}条 {'体育' if i % 2 else '财经'}新闻", "labels": ["甲" if i % 2 else "乙"]} for i in range(60)]
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert run("data", "prepare", tmp_path / "other.jsonl", "--out", tmp_path / "other").exit_code == 0
    result = run("export", "--from", students / "textcnn", "--data", tmp_path / "other", "--out", tmp_path / "b")
    assert result.exit_code != 0 and "other labels" in result.output
    assert not (tmp_path / "b").exists()
