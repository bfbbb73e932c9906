"""What a device bundle must be: complete and true (``check_bundle``), and, replayed as the phone runs it, giving
mobclf's labels: ids from the JVM tokenizer (``DeviceCli encode``) through the ``.pte`` in the ExecuTorch Python
runtime, labels decided by the Java post-processing (``DeviceCli classify``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from device_texts import write_jsonl

from mobclf.artifacts import load_artifact, sha256_file
from mobclf.data.dataset import load_dataset
from mobclf.export.executorch import PteRunner
from mobclf.export.onnx import OnnxRunner
from mobclf.models import load_classifier
from mobclf.text import load_tokenizer
from mobclf.train.classifier import predict_probs
from mobclf.train.thresholds import predict_labels


BUNDLE_KEYS = {"schema_version", "target", "model", "inputs", "output", "tokenizer", "labels", "labels_file",
               "thresholds", "metrics", "parity", "files"}


def check_bundle(out, model_dir, runtimes):
    """bundle.json is complete and true: its checksums, labels and thresholds, and a phone-style run of each file."""
    load_artifact(out, kind="export")
    bundle = json.loads((out / "bundle.json").read_text("utf-8"))
    source = load_artifact(model_dir)
    assert set(bundle) == BUNDLE_KEYS and bundle["schema_version"] == 1
    assert bundle["labels"] == source.labels == (out / "labels.txt").read_text("utf-8").split()
    assert bundle["thresholds"] == source.manifest["thresholds"]
    assert bundle["files"] == {name: sha256_file(out / name) for name in bundle["files"]}
    assert {"tokenizer/tokenizer.json", "tokenizer/vocab.txt", "labels.txt"} <= set(bundle["files"])
    assert bundle["tokenizer"]["max_length"] == bundle["inputs"]["max_length"]
    assert [f["runtime"] for f in bundle["model"]["files"].values()] == runtimes
    model = load_classifier(source)
    tokenizer = load_tokenizer(out / "tokenizer")
    for described in bundle["model"]["files"].values():
        certificate = bundle["parity"]["files"][described["file"]]
        assert certificate["passed"] and certificate["texts"] == 50
        runner_type = PteRunner if described["runtime"] == "executorch" else OnnxRunner
        runner = runner_type(out / described["file"], bundle["inputs"]["min_length"])
        for text in ("球", "央行宣布下调存款准备金率 " * 6):  # shortest and max-length input
            encoded = tokenizer.encode_batch([text])
            ours = runner(encoded["input_ids"], encoded["attention_mask"])
            eager = model(encoded["input_ids"], encoded["attention_mask"])
            tolerance = 1e-4 if described["precision"] == "fp32" else 0.5
            assert ours.shape == (1, len(bundle["labels"])) and (ours - eager).abs().max() < tolerance
    return bundle


def assert_java_ids_through_the_pte_give_mobclf_labels(model_dir: Path, bundle_dir: Path, data: Path, device_cli,
                                                       tmp_path: Path) -> None:
    """On the test texts of ``data``, an empty text and one longer than the max length."""
    bundle = json.loads((bundle_dir / "bundle.json").read_text("utf-8"))
    texts = load_dataset(data).texts("test") + ["", "NBA总决赛😀 iPhone15发布！" * 10]
    texts_file = tmp_path / "texts.jsonl"
    write_jsonl(texts_file, [{"text": text} for text in texts])

    encoded = [json.loads(line) for line in device_cli("encode", bundle_dir, texts_file)]
    runner = PteRunner(bundle_dir / "model.pte", bundle["inputs"]["min_length"])
    logits = [runner(torch.tensor([item["input_ids"]]), torch.tensor([item["attention_mask"]]))[0].tolist()
              for item in encoded]
    logits_file = tmp_path / "logits.jsonl"
    write_jsonl(logits_file, [{"logits": row} for row in logits])
    java_labels = [json.loads(line) for line in device_cli("classify", bundle_dir, logits_file)]

    source = load_artifact(model_dir)
    probs = predict_probs(load_classifier(source), load_tokenizer(source.path / "tokenizer"), texts)
    multi_hot = predict_labels(probs, np.asarray(bundle["thresholds"]), bundle["output"]["decision"] == "argmax")
    mobclf_labels = [[source.labels[i] for i in np.flatnonzero(row)] for row in multi_hot]
    assert all(len(item["input_ids"]) >= bundle["inputs"]["min_length"] for item in encoded)
    assert [sorted(labels) for labels in java_labels] == [sorted(labels) for labels in mobclf_labels]
