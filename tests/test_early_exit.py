"""mobclf early-exit: calibration on a constructed case, and a 3-layer TinyBERT given exits (the ``exits`` fixture of
conftest.py) whose forward leaves at the layer the rule says, with the base's answers kept exactly at the last one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run
from device_texts import device_texts, write_jsonl

from mobclf.artifacts import load_artifact
from mobclf.cascade import confidence
from mobclf.data.dataset import load_dataset
from mobclf.distill.early_exit import NONE_LEAVE, calibrate, leave_at
from mobclf.models import load_classifier
from mobclf.text import load_tokenizer


def one_hot(columns: list[int], labels: int = 2) -> np.ndarray:
    out = np.zeros((len(columns), labels), np.uint8)
    out[np.arange(len(columns)), columns] = 1
    return out


def test_the_rule_leaves_at_the_first_exit_sure_enough():
    confidences = np.array([[0.9, 0.1, 0.1, 0.5], [0.0, 0.8, 0.2, 0.5]])  # exits 1 and 2 of a 3-layer model
    assert leave_at(confidences, 0.5).tolist() == [0, 1, 2, 0]
    assert leave_at(confidences, 0.0).tolist() == [0, 0, 0, 0]
    assert leave_at(confidences, NONE_LEAVE).tolist() == [2, 2, 2, 2]


def test_calibration_runs_the_fewest_layers_that_keep_the_last_exits_f1():
    gold = one_hot([0, 1, 0, 1])
    # exit 1 gets texts 0 and 3 right, exit 2 texts 0, 1 and 3
    choices = np.stack([one_hot([0, 0, 1, 1]), one_hot([0, 1, 1, 1]), gold])
    confidences = np.array([[0.9, 0.1, 0.3, 0.8], [0.5, 0.7, 0.2, 0.6]])
    full = calibrate(confidences, choices, gold, keep=1.0, assurance=0)
    # keeping every text right: texts 0 and 3 leave at exit 1 (confidence ≥ 0.75 there), text 1 at exit 2, text 2 never
    assert (full["micro_f1"], full["student_micro_f1"], full["mean_layers"]) == (1.0, 1.0, (1 + 2 + 3 + 1) / 4)
    assert leave_at(confidences, full["threshold"]).tolist() == [0, 1, 2, 0]
    assert full["curve"][-1] == (3.0, 1.0) and (1.75, 1.0) in full["curve"]
    # keep 0.75: three of four right will do, so text 2 may leave at exit 1, wrongly
    three = calibrate(confidences, choices, gold, keep=0.75, assurance=0)
    assert (three["micro_f1"], three["mean_layers"]) == (0.75, 1.25)
    assert leave_at(confidences, three["threshold"]).tolist() == [0, 1, 0, 0]
    # keep 0.5: all leave at exit 1, where two of four are right
    assert calibrate(confidences, choices, gold, keep=0.5, assurance=0)["mean_layers"] == 1.0
    # three of four keep 75% on val, but only in the resamples that draw text 2 at most once (74%): with 90%
    # assurance no text may leave wrongly
    assured = calibrate(confidences, choices, gold, keep=0.75, assurance=0.9)
    assert (assured["micro_f1"], assured["mean_layers"], assured["assured"]) == (1.0, 1.75, 1.0)
    assert 0.65 < three["assured"] < 0.82


def encoded_texts(artifact, data, split="test"):
    texts = load_dataset(data).texts(split)
    return load_tokenizer(artifact.file("tokenizer")).encode_batch(list(texts))


def test_exits_leave_where_the_rule_says_and_the_last_answers_as_the_student(exits):
    artifact, source = load_artifact(exits / "early-exit"), load_artifact(exits / "tinybert3")
    assert artifact.kind == "student" and artifact.manifest["architecture"]["name"] == "early_exit_bert"
    model, student = load_classifier(artifact), load_classifier(source)
    assert all(torch.equal(value, student.state_dict()[name]) for name, value in model.base.state_dict().items())
    batch = encoded_texts(artifact, exits / "data")
    record = artifact.manifest["early_exit"]
    with torch.no_grad():
        every_exit = model.exit_logits(*model.features(batch["input_ids"], batch["attention_mask"]))
        assert (every_exit[-1] - student(batch["input_ids"], batch["attention_mask"])).abs().max() < 1e-5
        expected = leave_at(np.stack([confidence(torch.sigmoid(logits).numpy(), np.asarray(artifact.manifest[
            "thresholds"]), False) for logits in every_exit[:-1]]), record["threshold"])
        logits, layers = model.answer(batch["input_ids"], batch["attention_mask"])
        assert 0 < (layers < 3).sum() and (layers - 1).tolist() == expected.tolist()
        assert (logits - every_exit[expected, np.arange(len(expected))]).abs().max() < 1e-5
        one_by_one = [model.answer(batch["input_ids"][i:i + 1], batch["attention_mask"][i:i + 1])[1].item()
                      for i in range(len(layers))]
        assert one_by_one == layers.tolist()  # a text's exit does not depend on its batch
        for threshold, layer in ((0.0, 1), (NONE_LEAVE, 3)):
            model.config["threshold"] = threshold
            logits, layers = model.answer(batch["input_ids"], batch["attention_mask"])
            assert set(layers.tolist()) == {layer}
            assert (logits - every_exit[layer - 1]).abs().max() < 1e-5
    assert record["training"]["texts"]["unlabeled"] == 200
    val = record["val"]
    assert val["micro_f1"] >= 0.98 * val["exit_micro_f1"][-1] - 1e-9 and abs(sum(val["exit_shares"]) - 1) < 1e-9
    assert record["test"]["mean_layers"] == pytest.approx(1 + expected.mean())


def test_eval_and_predict_report_where_texts_left(exits, tmp_path):
    artifact = load_artifact(exits / "early-exit")
    record = artifact.manifest["early_exit"]["test"]
    result = run("eval", "--model", exits / "early-exit", "--data", exits / "data", "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["micro_f1"] == pytest.approx(artifact.manifest["metrics"]["test"]["micro_f1"])
    assert metrics["micro_f1"] == pytest.approx(record["micro_f1"])
    assert metrics["mean_exit_layer"] == pytest.approx(record["mean_layers"])
    texts = list(load_dataset(exits / "data").texts("test"))[:5]
    result = run("predict", "--model", exits / "early-exit", *texts)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(records) == 5 and all(record["exit_layer"] in (1, 2, 3) for record in records)


@pytest.mark.parametrize("case", ["textcnn", "one-layer", "early-exit", "loss"])
def test_what_cannot_get_exits_is_one_line(exits, tmp_path, case):
    source = {"textcnn": "textcnn", "one-layer": "tinybert", "early-exit": "early-exit", "loss": "tinybert3"}[case]
    extra = ["--loss", "hint_mse=1"] if case == "loss" else []
    result = run("early-exit", "--from", exits / source, "--data", exits / "data", "--out", tmp_path / "out", *extra)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def bundle(exits):
    """The early-exit model exported for both runtimes: a .pte with a method per layer and an .onnx graph."""
    result = run("export", "--from", exits / "early-exit", "--target", "all", "--out", exits / "early-exit-bundle",
                 "--parity-texts", "40")
    assert result.exit_code == 0, result.output
    return exits / "early-exit-bundle"


def eager_answers(exits):
    artifact = load_artifact(exits / "early-exit")
    model = load_classifier(artifact)
    batch = encoded_texts(artifact, exits / "data")
    with torch.no_grad():
        logits, layers = model.answer(batch["input_ids"], batch["attention_mask"])
        every_exit = model.exit_logits(*model.features(batch["input_ids"], batch["attention_mask"]))
    return batch, logits, layers, every_exit


def test_the_pte_chains_a_method_per_layer_and_answers_as_the_eager_model(exits, bundle, tmp_path):
    from mobclf.export.early_exit import EarlyExitPteRunner

    description = json.loads((bundle / "bundle.json").read_text())
    rule = description["early_exit"]
    assert rule["methods"] == ["exit_1", "exit_2", "exit_3"] and rule["leave_when"] == "confidence >= threshold"
    certificates = description["parity"]["files"]
    assert set(certificates) == {"model.pte", "model.onnx", *(f"model.pte#{name}" for name in rule["methods"])}
    assert all(c["passed"] and c["max_abs_prob_difference"] < 1e-4 for c in certificates.values())
    assert certificates["model.pte"]["exit_layer_agreement"] == 1.0
    runner = EarlyExitPteRunner(bundle / "model.pte", description["inputs"]["min_length"], rule,
                                description["thresholds"], single_label=False)
    batch, eager_logits, eager_layers, every_exit = eager_answers(exits)
    logits, layers = runner.answer(batch["input_ids"], batch["attention_mask"])
    assert layers.tolist() == eager_layers.tolist() and (logits - eager_logits).abs().max() < 1e-4
    assert (runner.all_exits(batch["input_ids"], batch["attention_mask"]) - every_exit).abs().max() < 1e-4
    result = run("eval", "--model", bundle, "--bundle-file", "model.pte", "--data", exits / "data", "--json",
                 tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mean_exit_layer"] == pytest.approx(float(eager_layers.float().mean()))
    assert metrics["micro_f1"] == pytest.approx(load_artifact(exits / "early-exit").manifest["early_exit"]["test"][
        "micro_f1"])


def test_java_leaves_at_the_layer_python_leaves_at(exits, bundle, device_cli, tmp_path):
    """The phone's rule (DeviceBundle.leavesAt, as PteClassifier chains the .pte's methods) on every exit's logits
    of the device texts (6,000 real headlines and articles and the tricky ones): the same exit layer as Python."""
    artifact = load_artifact(exits / "early-exit")
    model = load_classifier(artifact)
    batch = load_tokenizer(artifact.file("tokenizer")).encode_batch(device_texts())
    with torch.no_grad():
        every_exit = model.exit_logits(*model.features(batch["input_ids"], batch["attention_mask"]))
        python = model.answer(batch["input_ids"], batch["attention_mask"])[1].tolist()
    assert len(set(python)) == 3  # texts leave at every layer
    exits_file = tmp_path / "exits.jsonl"
    write_jsonl(exits_file, [{"exits": row} for row in every_exit.transpose(0, 1).tolist()])
    java = [json.loads(line)["exit_layer"] for line in device_cli("exit", bundle, exits_file)]
    assert java == python


def test_the_onnx_graph_stops_at_the_exit_by_itself(exits, bundle, tmp_path):
    """One .onnx graph, an If node after each exit: same answers and exit layers as the eager model, one call."""
    import onnx
    import onnxruntime

    description = json.loads((bundle / "bundle.json").read_text())
    assert description["parity"]["files"]["model.onnx"]["exit_layer_agreement"] == 1.0
    graph = onnx.load(str(bundle / "model.onnx")).graph
    assert [output.name for output in graph.output] == ["logits", "exit_layer"]
    assert [node.op_type for node in graph.node].count("If") == 1  # the next If sits in its else branch
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    batch, eager_logits, eager_layers, _ = eager_answers(exits)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    for row, length in enumerate(lengths):
        feeds = {"input_ids": batch["input_ids"][row:row + 1, :length].numpy(),
                 "attention_mask": batch["attention_mask"][row:row + 1, :length].numpy()}
        logits, layer = session.run(["logits", "exit_layer"], feeds)
        assert layer.tolist() == [eager_layers[row].item()]
        assert np.abs(logits[0] - eager_logits[row].numpy()).max() < 1e-4
    result = run("eval", "--model", bundle, "--bundle-file", "model.onnx", "--data", exits / "data", "--json",
                 tmp_path / "m.json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mean_exit_layer"] == pytest.approx(float(eager_layers.float().mean()))


@pytest.fixture(scope="module")
def int8_pte(exits):
    """The early-exit model quantized for ExecuTorch (static INT8, each method calibrated on what reaches it), as an
    Android bundle. Label agreement ≥ 0.9, not 0.98: this 32-wide model's exit confidences crowd its threshold
    (0.045), and of its 59 val texts 2-4 cross it in INT8 (0.043 → above, say) and answer from another exit."""
    tolerance = ("--min-agreement", "0.9")
    result = run("quantize", "--from", exits / "early-exit", "--data", exits / "data", "--out",
                 exits / "early-exit-int8-pte", "--calibration", "64", *tolerance)
    assert result.exit_code == 0, result.output
    result = run("export", "--from", exits / "early-exit-int8-pte", "--target", "android", "--out",
                 exits / "early-exit-int8-android", *tolerance)
    assert result.exit_code == 0, result.output
    return exits / "early-exit-int8-pte", exits / "early-exit-int8-android"


def test_the_int8_pte_quantizes_every_method_and_leaves_where_the_eager_model_does(exits, int8_pte):
    from executorch.runtime import Runtime

    from mobclf.export.early_exit import EarlyExitPteRunner

    quantized, android = int8_pte
    record = load_artifact(quantized).manifest["quantization"]
    assert record["scheme"] == "static" and record["embedding"] == "int8"
    # the six weight matrices of each of the 3 layers (and the exits'), int8 per channel, in XNNPACK
    assert record["delegated_ops"]["quantized_decomposed_dequantize_per_channel_default"] >= 6 * 3
    description = json.loads((android / "bundle.json").read_text())
    assert description["model"]["files"]["executorch"]["precision"] == "int8"
    certificates = description["parity"]["files"]
    assert set(certificates) == {"model.pte", *(f"model.pte#{name}" for name in description["early_exit"]["methods"])}
    assert all(certificate["passed"] for certificate in certificates.values())
    assert certificates["model.pte"]["exit_layer_agreement"] >= 0.85
    program = Runtime.get().load_program(android / "model.pte")
    assert sorted(program.method_names) == ["exit_1", "exit_2", "exit_3"]
    runner = EarlyExitPteRunner(android / "model.pte", description["inputs"]["min_length"],
                                description["early_exit"], description["thresholds"], single_label=False)
    batch, _, eager_layers, every_exit = eager_answers(exits)
    logits, layers = runner.answer(batch["input_ids"], batch["attention_mask"])
    int8_exits = runner.all_exits(batch["input_ids"], batch["attention_mask"])
    assert (torch.sigmoid(int8_exits) - torch.sigmoid(every_exit)).abs().max() < 0.2  # each exit, as certified
    assert torch.equal(logits, int8_exits[layers - 1, torch.arange(len(layers))])  # the chain answers from its exit
    assert (layers == eager_layers).float().mean() >= 0.75  # the crowded threshold again, on the test texts


@pytest.fixture(scope="module")
def int8_onnx(exits):
    """The early-exit model quantized for onnxruntime (dynamic INT8, inside the If branches too), as a web bundle."""
    result = run("quantize", "--from", exits / "early-exit", "--data", exits / "data", "--out",
                 exits / "early-exit-int8-onnx", "--runtime", "onnx")
    assert result.exit_code == 0, result.output
    result = run("export", "--from", exits / "early-exit-int8-onnx", "--target", "web", "--out",
                 exits / "early-exit-int8-web")  # the val texts quantize certified it on
    assert result.exit_code == 0, result.output
    return exits / "early-exit-int8-onnx", exits / "early-exit-int8-web"


def test_the_int8_onnx_graph_quantizes_the_layers_inside_its_branches(exits, int8_onnx):
    import onnx

    quantized, web = int8_onnx
    manifest = load_artifact(quantized).manifest
    assert manifest["quantization"]["scheme"] == "dynamic"
    graph = onnx.load(str(quantized / "model.onnx")).graph
    assert "MatMulInteger" in {node.op_type for node in graph.node}  # layer 1
    first_if = next(node for node in graph.node if node.op_type == "If")
    layer_2 = next(attribute.g for attribute in first_if.attribute if attribute.name == "else_branch")
    assert "MatMulInteger" in {node.op_type for node in layer_2.node}
    certificate = json.loads((web / "bundle.json").read_text())["parity"]["files"]["model.onnx"]
    assert certificate["passed"] and certificate["exit_layer_agreement"] >= 0.9
    assert json.loads((web / "bundle.json").read_text())["model"]["files"]["onnx"]["precision"] == "int8"


def test_bench_reports_where_texts_left_in_every_runtime(exits, bundle, int8_pte, int8_onnx, tmp_path):
    record = load_artifact(exits / "early-exit").manifest["early_exit"]["test"]
    result = run("bench", "--model", exits / "early-exit", "--model", bundle, "--model", int8_pte[0], "--model",
                 int8_onnx[0], "--data", exits / "data", "--out", tmp_path / "report", "--latency-texts", "5",
                 "--cold-starts", "1", "--no-tfidf")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [row["runtime"] for row in report["rows"]] == ["eager", "executorch", "onnxruntime", "executorch",
                                                          "onnxruntime"]
    native = report["native"]  # the C++ runner chains the methods of both .pte files as the app does
    assert [row["precision"] for row in native] == ["fp32", "int8"]
    assert all(row["exit_layers_equal_python"] and row["logits_equal_python"] for row in native)
    assert all(1 <= row["mean_exit_layer"] <= 3 and row["profile"] is None for row in native)
    for int8 in (report["rows"].pop(), report["rows"].pop()):
        assert 1 <= int8["mean_exit_layer"] <= 3 and int8["micro_f1"] >= record["micro_f1"] - 0.05
    for row in report["rows"]:
        assert row["mean_exit_layer"] == pytest.approx(record["mean_layers"])
        assert row["exit_shares"] == pytest.approx(record["exit_shares"])
        assert row["micro_f1"] == pytest.approx(record["micro_f1"]) and row["latency_ms_mean"] > 0
    assert "layers on average" in (tmp_path / "report" / "report.md").read_text()
