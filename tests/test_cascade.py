"""mobclf cascade: the confidence rule and its calibration on constructed cases, and a cascade bundle of two tiny
exported students whose recorded scores the rule reproduces."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from conftest import run
from device_texts import device_texts, write_jsonl

from mobclf.artifacts import load_artifact
from mobclf.bench.variants import open_model
from mobclf.cascade import calibrate, confidence, escalated, open_cascade
from mobclf.data.dataset import load_dataset
from mobclf.native.jvm import ANDROID_DEMO
from mobclf.train.metrics import classification_metrics

WEB = ANDROID_DEMO / "web"


def write_lines(path, texts: list[str]):
    path.write_text("".join(text + "\n" for text in texts), encoding="utf-8")
    return path


def one_hot(columns: list[int], labels: int = 3) -> np.ndarray:
    out = np.zeros((len(columns), labels), np.uint8)
    out[np.arange(len(columns)), columns] = 1
    return out


def test_confidence_is_the_distance_from_changing_the_decision():
    probs = np.array([[0.9, 0.05, 0.3], [0.4, 0.45, 0.1]])
    assert confidence(probs, np.full(3, 0.5), single_label=True) == pytest.approx([0.6, 0.05])
    # multi-label: the label nearest its own threshold decides
    assert confidence(probs, np.array([0.5, 0.5, 0.35]), single_label=False) == pytest.approx([0.05, 0.05])
    assert confidence(probs, np.array([0.2, 0.9, 0.2]), single_label=False) == pytest.approx([0.1, 0.1])


def test_calibration_escalates_the_fewest_texts_that_keep_the_accurate_models_f1():
    gold = one_hot([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    accurate = gold.copy()
    fast = gold.copy()
    fast[[0, 1, 2]] = one_hot([1, 2, 0])  # the fast model is wrong on its three least confident texts
    confidences = np.array([0.01, 0.02, 0.03, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    full = calibrate(confidences, fast, accurate, gold, keep=1.0, assurance=0)
    assert (full.escalation_rate, full.micro_f1, full.fast_micro_f1, full.accurate_micro_f1) == (0.3, 1.0, 0.7, 1.0)
    assert escalated(confidences, full.threshold).tolist() == [True] * 3 + [False] * 7
    assert (0.3, 1.0) in full.curve and full.curve[0] == (0.0, 0.7) and full.curve[-1] == (1.0, 1.0)
    # keeping 80% of the accurate model's F1 needs one escalation: 8 of 10 right
    assert calibrate(confidences, fast, accurate, gold, keep=0.8, assurance=0).escalation_rate == 0.1
    assert calibrate(confidences, fast, accurate, gold, keep=0.7, assurance=0).escalation_rate == 0.0
    # texts of equal confidence go together: no threshold splits them
    tied = confidences.copy()
    tied[2] = tied[3]
    with_tie = calibrate(tied, fast, accurate, gold, keep=1.0, assurance=0)
    assert with_tie.escalation_rate == 0.4 and escalated(tied, with_tie.threshold).sum() == 4


def test_calibration_with_assurance_keeps_the_f1_in_most_resamples_of_val():
    gold = one_hot([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    fast, accurate = gold.copy(), gold.copy()
    fast[[0, 1, 2]] = one_hot([1, 2, 0])
    confidences = np.array([0.01, 0.02, 0.03, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    # 8 of 10 right keeps 80% on val, but a resample draws 3 or more of the 2 wrong texts in about 32% of draws
    # (binomial, 10 draws at 0.2); with 1 wrong, in about 7%
    one = calibrate(confidences, fast, accurate, gold, keep=0.8, assurance=0)
    assert one.escalation_rate == 0.1 and 0.6 < one.assured < 0.76
    two = calibrate(confidences, fast, accurate, gold, keep=0.8, assurance=0.9)
    assert two.escalation_rate == 0.2 and two.micro_f1 == 0.9 and two.assured >= 0.9
    # every resample: only the accurate model's answers everywhere keep 80% in all of them
    assert calibrate(confidences, fast, accurate, gold, keep=0.8, assurance=1).escalation_rate == 0.3


@pytest.fixture(scope="module")
def bundles(students):
    for name in ("textcnn", "tinybert"):
        result = run("export", "--from", students / name, "--target", "all", "--out", students / f"cascade-{name}",
                     "--parity-texts", "30")
        assert result.exit_code == 0, result.output
    return students


@pytest.fixture(scope="module")
def cascade_dir(bundles):
    out = bundles / "cascade"
    result = run("cascade", "--fast", bundles / "cascade-textcnn", "--accurate", bundles / "cascade-tinybert",
                 "--data", bundles / "data", "--out", out, "--keep", "0.98")
    assert result.exit_code == 0, result.output
    return out


def test_a_cascade_bundle_holds_both_bundles_and_a_rule_that_reproduces_its_scores(bundles, cascade_dir, tmp_path):
    out = cascade_dir
    cascade = load_artifact(out, kind="cascade")
    rule = json.loads(cascade.file("cascade.json").read_text("utf-8"))
    assert rule["confidence"] == "threshold_distance" and set(rule["runtimes"]) == {"executorch", "onnxruntime"}
    assert cascade.file("calibration.png").stat().st_size > 0
    dataset = load_dataset(bundles / "data")
    for runtime, chosen in rule["runtimes"].items():
        assert chosen["val"]["micro_f1"] >= 0.98 * chosen["val"]["accurate_micro_f1"] - 1e-9
        # the sub-bundles are the exported bundles, intact, and the rule applied to them gives the recorded scores
        fast = open_model(load_artifact(out / "fast", kind="export"), chosen["fast"].removeprefix("fast/"))
        accurate = open_model(load_artifact(out / "accurate", kind="export"),
                              chosen["accurate"].removeprefix("accurate/"))
        texts = dataset.texts("test")
        fast_probs = fast.probs(texts)
        sent = escalated(confidence(fast_probs, fast.thresholds, fast.single_label), chosen["threshold"])
        choices = np.where(sent[:, None], accurate.decide(accurate.probs(texts)), fast.decide(fast_probs))
        metrics = classification_metrics(dataset.targets("test", np.uint8), choices, dataset.labels)
        assert metrics["micro_f1"] == pytest.approx(chosen["test"]["micro_f1"])
        assert sent.mean() == pytest.approx(chosen["test"]["escalation_rate"])
    assert [parent["kind"] for parent in cascade.manifest["lineage"]["parents"]] == ["export", "export", "dataset"]
    # eval and predict run the same rule, in the runtime asked for
    result = run("eval", "--model", out, "--data", bundles / "data", "--bundle-file", "onnxruntime", "--json",
                 tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    evaluated, tested = json.loads((tmp_path / "eval.json").read_text("utf-8")), rule["runtimes"]["onnxruntime"]["test"]
    assert evaluated["micro_f1"] == pytest.approx(tested["micro_f1"])
    assert evaluated["escalation_rate"] == pytest.approx(tested["escalation_rate"])
    texts = dataset.texts("test")[:40]
    result = run("predict", "--model", out, "--input", write_lines(tmp_path / "texts.txt", texts), "--output",
                 tmp_path / "answers.jsonl")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text("utf-8").splitlines()]
    executorch = open_cascade(cascade, "executorch").answer(texts)
    assert [answer["answered_by"] == "accurate" for answer in answers] == executorch.escalated.tolist()
    assert [answer["labels"] for answer in answers] == [
        [dataset.labels[index] for index in np.argsort(-probs, kind="stable") if chosen[index]]
        for probs, chosen in zip(executorch.probs, executorch.choices)]


def test_bench_gives_a_cascade_a_row_per_runtime_from_its_parts(bundles, cascade_dir, tmp_path):
    """The cascade's parts are measured as any bundle file; its row applies the rule to their answers (the same
    scores cascade.json recorded on test) and adds the accurate part's time to the fast part's on escalated texts,
    in Python and in the native runner."""
    out = tmp_path / "report"
    result = run("bench", "--model", cascade_dir, "--data", bundles / "data", "--out", out, "--latency-texts", "12",
                 "--cold-starts", "1", "--no-tfidf")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text("utf-8"))
    rows = {row["name"]: row for row in report["rows"]}
    rules = json.loads((cascade_dir / "cascade.json").read_text("utf-8"))["runtimes"]
    assert list(rows) == ["cascade/fast/model.pte", "cascade/fast/model.onnx", "cascade/accurate/model.pte",
                          "cascade/accurate/model.onnx", "cascade (executorch)", "cascade (onnxruntime)"]
    for runtime, rule in rules.items():
        row = rows[f"cascade ({runtime})"]
        fast, accurate = rows[f"cascade/{rule['fast']}"], rows[f"cascade/{rule['accurate']}"]
        assert row["kind"] == "cascade" and row["runtime"] == runtime
        assert row["micro_f1"] == pytest.approx(rule["test"]["micro_f1"])
        assert row["escalation_rate"] == pytest.approx(rule["test"]["escalation_rate"])
        assert row["size_bytes"] == fast["size_bytes"] + accurate["size_bytes"]
        assert fast["latency_ms_p50"] <= row["latency_ms_p95"] and row["latency_ms_mean"] > 0
    assert "% escalated, mean" in (out / "report.md").read_text("utf-8")
    # natively: the parts' runner times on the 12 timed texts, the accurate one's where the rule sends the text
    native = {row["name"]: row for row in report["native"]}
    assert list(native) == ["cascade/fast/model.pte", "cascade/accurate/model.pte", "cascade (executorch)"]
    row, fast, accurate = native["cascade (executorch)"], native["cascade/fast/model.pte"], native[
        "cascade/accurate/model.pte"]
    python = open_cascade(load_artifact(cascade_dir), "executorch")
    assert row["escalation_rate"] == python.answer(load_dataset(bundles / "data").texts("test")[:12]).escalated.mean()
    assert fast["latency_ms_mean"] - 1e-3 <= row["latency_ms_mean"] <= fast["latency_ms_mean"] + accurate[
        "latency_ms_mean"] + 1e-3
    assert row["logits_equal_python"] and row["size_bytes"] == fast["size_bytes"] + accurate["size_bytes"]
    assert "cascade (executorch) (" in (out / "report.md").read_text("utf-8").split("## Native")[1]


def test_what_cannot_make_a_cascade_is_one_line(bundles, tmp_path):
    android = tmp_path / "android-only"
    assert run("export", "--from", bundles / "tinybert", "--target", "android", "--out", android,
               "--parity-texts", "10").exit_code == 0
    onnx = tmp_path / "onnx-only"
    assert run("export", "--from", bundles / "textcnn", "--target", "onnx", "--out", onnx,
               "--parity-texts", "10").exit_code == 0
    cases = [(["--fast", onnx, "--accurate", android], "the bundles share no runtime"),
             (["--fast", bundles / "textcnn", "--accurate", android], "but an export artifact is needed")]
    for args, message in cases:
        result = run("cascade", *args, "--data", bundles / "data", "--out", tmp_path / "c")
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("decision", ["threshold", "argmax"])
def test_java_and_javascript_escalate_the_texts_python_escalates(cascade_dir, device_cli, tmp_path, decision):
    """The rule on the phone (Java) and in the browser (JavaScript) against Python's, on the fast model's logits of
    the device texts (6,000 real headlines and articles and the tricky ones): the same texts escalated. The
    threshold is set between two texts' confidences near the median, so half the texts go each way; "argmax" is the
    single-label rule (the margin), on the same bundle with its decision switched."""
    copy = tmp_path / "cascade"
    shutil.copytree(cascade_dir, copy)
    fast_bundle = json.loads((copy / "fast" / "bundle.json").read_text("utf-8"))
    fast_bundle["output"]["decision"] = decision
    (copy / "fast" / "bundle.json").write_text(json.dumps(fast_bundle), encoding="utf-8")
    fast = open_model(load_artifact(cascade_dir / "fast", kind="export"), "model.pte")
    texts = device_texts()
    encoded = fast.tokenizer.encode_batch(texts)
    logits = fast.forward(encoded["input_ids"], encoded["attention_mask"]).float()
    probs = torch.sigmoid(logits).numpy()
    confidences = confidence(probs, fast.thresholds, decision == "argmax")
    middle = np.unique(confidences)[len(np.unique(confidences)) // 2 - 1:][:2]
    rule = json.loads((copy / "cascade.json").read_text("utf-8"))
    for chosen in rule["runtimes"].values():
        chosen["threshold"] = float(middle.mean())
    (copy / "cascade.json").write_text(json.dumps(rule), encoding="utf-8")
    python = escalated(confidences, float(middle.mean())).tolist()
    assert 0.3 < np.mean(python) < 0.7
    logits_file = tmp_path / "logits.jsonl"
    write_jsonl(logits_file, [{"logits": row} for row in logits.numpy().tolist()])
    node = shutil.which("node")
    assert node, "node: run android-demo/tools/install-test-tools.sh"
    javascript = subprocess.run([node, WEB / "cascade-cli.mjs", copy, logits_file], capture_output=True, text=True,
                                encoding="utf-8")
    assert javascript.returncode == 0, javascript.stderr
    for port, lines in (("java", device_cli("escalate", copy, logits_file)),
                        ("javascript", javascript.stdout.split("\n")[:-1])):
        decisions = [json.loads(line) for line in lines]
        assert [decision["escalate"] for decision in decisions] == python, port
        assert [decision["confidence"] for decision in decisions] == pytest.approx(confidences.tolist(), abs=1e-6)
