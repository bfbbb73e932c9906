"""mobclf prune: structured pruning of tiny TextCNN and TinyBERT students, vocabulary pruning, the pruned artifact
(rebuilt from its manifest, trainable, exportable) and one-line errors for bad options."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mobclf.artifacts import load_artifact
from mobclf.cli import main
from mobclf.compress.prune import prune_vocabulary
from mobclf.data.dataset import load_dataset
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.models import count_parameters, load_classifier
from mobclf.text import load_tokenizer
from mobclf.train.classifier import predict_probs, split_metrics


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A dataset, a 1-layer teacher, a TextCNN student (its vocabulary also holds unlabelled-only characters) and
    a 2-layer TinyBERT student with 4 heads, all tiny."""
    root = tmp_path_factory.mktemp("prune")
    generate_demo_corpus(root / "news.jsonl", n_items=300, seed=7)
    (root / "unlabeled.txt").write_text("龘靐齉爩\n", "utf-8")
    assert run("data", "prepare", root / "news.jsonl", "--out", root / "data").exit_code == 0
    result = run("train-teacher", "--data", root / "data", "--out", root / "teacher", "--layers", "1", "--hidden", "32",
                 "--heads", "2", "--max-length", "32", "--epochs", "2", "--batch-size", "32", "--lr", "2e-3")
    assert result.exit_code == 0, result.output
    common = ["--teacher", root / "teacher", "--data", root / "data", "--epochs", "1", "--batch-size", "32"]
    result = run("distill", "textcnn", *common, "--out", root / "textcnn", "--embedding-dim", "16", "--filters", "8",
                 "--lr", "3e-3", "--unlabeled", root / "unlabeled.txt")
    assert result.exit_code == 0, result.output
    result = run("distill", "tinybert", *common, "--out", root / "tinybert", "--layers", "2",
                 "--hidden", "32", "--heads", "4", "--intermediate", "64", "--lr", "3e-3")
    assert result.exit_code == 0, result.output
    return root


def batch(artifact, n=6):
    tokenizer = load_tokenizer(artifact.file("tokenizer"))
    encoded = tokenizer.encode_batch(load_dataset(artifact.path.parent / "data").texts("val")[:n])
    return encoded["input_ids"], encoded["attention_mask"]


def check_pruned_artifact(workdir, out, student):
    """What every pruned artifact must be: smaller, rebuilt from its manifest with the weights that scored its
    metrics, trainable, and exportable with torch.export."""
    artifact = load_artifact(out, kind="pruned")
    manifest, parent = artifact.manifest, load_artifact(workdir / student)
    pruning = manifest["pruning"]
    assert pruning["params_after"] < pruning["params_before"] and pruning["macs_after"] < pruning["macs_before"]
    assert manifest["params"] < parent.manifest["params"]
    assert [p["kind"] for p in manifest["lineage"]["parents"]] == [parent.kind, "teacher", "dataset"]
    assert pruning["teacher"]["path"] == str(workdir / "teacher")
    assert 0 <= manifest["metrics"]["agreement_with_teacher"]["val"] <= 1 and "test" in manifest["metrics"]

    model = load_classifier(artifact)
    ids, mask = batch(artifact)
    with torch.no_grad():
        logits = model(ids, mask)
    assert logits.shape == (len(ids), len(manifest["labels"]))
    dataset = load_dataset(workdir / "data")
    probs = predict_probs(model, load_tokenizer(artifact.file("tokenizer")), dataset.texts("val"))
    assert split_metrics(probs, dataset, "val", np.asarray(manifest["thresholds"]))["micro_f1"] == pytest.approx(
        manifest["metrics"]["val"]["micro_f1"])

    exported = torch.export.export(model, (ids, mask))
    torch.testing.assert_close(exported.module()(ids, mask), logits, atol=1e-5, rtol=1e-5)

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, mask), torch.ones_like(logits))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    return manifest


def test_textcnn_filters_are_pruned_iteratively_with_recovery_and_the_vocabulary_shrinks(workdir):
    result = run("prune", "--from", workdir / "textcnn", "--data", workdir / "data", "--out", workdir / "textcnn-p",
                 "--ratio", "0.5", "--steps", "2", "--recovery-epochs", "1", "--batch-size", "32")
    assert result.exit_code == 0, result.output
    manifest = check_pruned_artifact(workdir, workdir / "textcnn-p", "textcnn")
    config = manifest["architecture"]["config"]
    assert config["num_filters"] == [4, 4, 4]  # 8 per kernel size, half removed in two steps
    assert [step["ratio"] for step in manifest["pruning"]["steps"]] == [0.25, 0.5]
    assert all("recovery" in step for step in manifest["pruning"]["steps"])
    vocabulary = manifest["pruning"]["vocabulary"]
    assert vocabulary["after"] == config["vocab_size"] == manifest["tokenizer"]["num_tokens"] < vocabulary["before"]
    assert "龘" not in load_tokenizer(workdir / "textcnn-p" / "tokenizer").token_ids  # seen in unlabelled text only
    assert manifest["distillation"]["teacher"]["path"] == str(workdir / "teacher")

    # a pruned artifact prunes again; its teacher comes from its own manifest
    result = run("prune", "--from", workdir / "textcnn-p", "--data", workdir / "data", "--out", workdir / "textcnn-pp",
                 "--ratio", "0.5", "--recovery-epochs", "0", "--importance", "taylor", "--global")
    assert result.exit_code == 0, result.output
    again = load_artifact(workdir / "textcnn-pp").manifest
    assert sum(again["architecture"]["config"]["num_filters"]) == 6
    assert again["lineage"]["parents"][0]["kind"] == "pruned"


@pytest.mark.parametrize("args, heads", [(["--importance", "taylor"], [2, 2]), (["--global"], None)])
def test_tinybert_heads_and_ffn_channels_are_pruned_and_hidden_size_stays(workdir, args, heads):
    out = workdir / f"tinybert-p{len(heads or [])}"
    result = run("prune", "--from", workdir / "tinybert", "--data", workdir / "data", "--out", out, "--ratio", "0.5",
                 "--recovery-epochs", "1", "--batch-size", "32", *args)
    assert result.exit_code == 0, result.output
    manifest = check_pruned_artifact(workdir, out, "tinybert")
    config = manifest["architecture"]["config"]
    assert config["bert"]["hidden_size"] == 32 and config["bert"]["num_hidden_layers"] == 2
    assert sum(config["layer_heads"]) == 4 and min(config["layer_heads"]) >= 1  # 8 heads in all, half removed
    assert heads is None or config["layer_heads"] == heads
    assert sum(config["layer_intermediate"]) == 64 if heads else 0 < sum(config["layer_intermediate"]) < 128
    model = load_classifier(load_artifact(out))
    for layer, n_heads in zip(model.bert.encoder.layer, config["layer_heads"]):
        assert layer.attention.self.query.out_features == n_heads * 8  # head size 32 / 4 unchanged


@pytest.mark.parametrize("student", ["textcnn", "tinybert"])
def test_vocabulary_pruning_keeps_every_prediction_on_the_texts_it_kept(workdir, tmp_path, student):
    artifact = load_artifact(workdir / student)
    model, tokenizer = load_classifier(artifact), load_tokenizer(artifact.file("tokenizer"))
    texts = load_dataset(workdir / "data").texts("train")[:40]
    pruned, small = prune_vocabulary(copy.deepcopy(model), tokenizer, texts)
    assert len(small.vocab) < len(tokenizer.vocab) and small.spec["type"] == tokenizer.spec["type"]
    assert pruned.config != model.config and count_parameters(pruned) < count_parameters(model)
    small.save(tmp_path / "tokenizer")
    reloaded = load_tokenizer(tmp_path / "tokenizer")
    before, after = tokenizer.encode_batch(texts), reloaded.encode_batch(texts)
    assert torch.equal(before["attention_mask"], after["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(pruned(after["input_ids"], after["attention_mask"]),
                                   model(before["input_ids"], before["attention_mask"]), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--ratio", "0"], "'--ratio'"),
    (["--ratio", "1.5"], "'--ratio'"),
    (["--importance", "entropy"], "'entropy' is not one of 'magnitude', 'taylor'"),
    (["--steps", "0"], "'--steps'"),
    (["--loss", "hint_mse=1"], "recovery trains the outputs only"),
    (["--from-teacher"], "a teacher artifact, but a student or pruned artifact is needed"),
    (["--teacher-is-data"], "a dataset artifact, but a teacher artifact is needed"),
])
def test_bad_prune_options_are_one_line_errors(workdir, tmp_path, args, message):
    source = workdir / "textcnn"
    if args == ["--from-teacher"]:
        source, args = workdir / "teacher", []
    if args == ["--teacher-is-data"]:
        args = ["--teacher", workdir / "data"]
    result = run("prune", "--from", source, "--data", workdir / "data", "--out", tmp_path / "p", *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p").exists()
