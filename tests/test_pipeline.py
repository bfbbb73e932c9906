"""End to end on a tiny generated corpus: prepare → teacher → student (every loss) → eval, through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import chance_micro_f1
from transformers import BertConfig, BertModel

from mobclf.artifacts import load_artifact
from mobclf.cli import main
from mobclf.data.dataset import load_dataset
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.distill.teacher_cache import cache_dir

TINY_TEACHER = ["--layers", "1", "--hidden", "48", "--heads", "4", "--max-length", "40", "--batch-size", "32",
                "--lr", "2e-3", "--epochs", "6"]


def run(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    generate_demo_corpus(root / "corpus" / "news.jsonl", n_items=1200, seed=3)
    assert run("data", "prepare", root / "corpus" / "news.jsonl", "--out", root / "data").exit_code == 0
    assert run("train-teacher", "--data", root / "data", "--out", root / "teacher", *TINY_TEACHER).exit_code == 0
    return root


def test_teacher_learns_and_records_thresholds_metrics_and_lineage(workdir):
    teacher = load_artifact(workdir / "teacher", kind="teacher")
    manifest = teacher.manifest
    assert manifest["architecture"]["name"] == "bert" and manifest["multi_label"] is True
    assert len(manifest["thresholds"]) == len(manifest["labels"])
    assert manifest["metrics"]["test"]["micro_f1"] > chance_micro_f1(workdir / "data") + 0.2
    assert manifest["lineage"]["parents"][0]["sha256"] == load_artifact(workdir / "data").sha256
    assert manifest["tokenizer"]["type"] == "char" and manifest["tokenizer"]["add_special_tokens"] is True


def test_student_with_every_loss_beats_chance_and_agrees_with_its_teacher(workdir):
    unlabeled = workdir / "unlabeled.txt"
    unlabeled.write_text("\n".join(["苹果发布新款手机 股价上涨", "国足客场战平对手", "央行宣布降息"]), "utf-8")
    result = run("distill", "textcnn", "--teacher", workdir / "teacher", "--data", workdir / "data", "--out",
                 workdir / "student", "--loss", "soft_kd=1", "--loss", "hard_bce=1", "--loss", "hint_mse=1", "--loss",
                 "attention_transfer=1", "--intermediate-epochs", "1", "--tokenizer", "jieba", "--epochs", "12",
                 "--batch-size", "32", "--lr", "3e-3", "--embedding-dim", "48", "--filters", "32",
                 "--unlabeled", unlabeled)
    assert result.exit_code == 0, result.output
    manifest = load_artifact(workdir / "student", kind="student").manifest
    assert manifest["architecture"]["name"] == "textcnn" and manifest["tokenizer"]["type"] == "jieba"
    assert manifest["metrics"]["test"]["micro_f1"] > chance_micro_f1(workdir / "data") + 0.2
    assert manifest["metrics"]["agreement_with_teacher"]["test"] > 0.6
    plan = manifest["distillation"]["plan"]
    assert plan["hint_layer"] == 0 and plan["attention_layers"] == [1]  # middle and last of a 1-layer teacher
    assert [(m["loss"], m["student"], m["teacher"], m["projection"]) for m in plan["matches"]] == [
        ("soft_kd", "logits", "logits", None), ("hard_bce", "logits", "labels", None),
        ("hint_mse", "features", "hidden.0", "hint"), ("attention_transfer", "attention_map", "cls_attention", None)]
    assert manifest["distillation"]["unlabeled_texts"] == 3
    assert manifest["distillation"]["stages"][0]["stage"] == "intermediate"
    assert [p["kind"] for p in manifest["lineage"]["parents"]] == ["teacher", "dataset"]

    result = run("eval", "--model", workdir / "student", "--data", workdir / "data", "--json", workdir / "eval.json")
    assert result.exit_code == 0
    evaluated = json.loads((workdir / "eval.json").read_text())
    assert evaluated["micro_f1"] == pytest.approx(manifest["metrics"]["test"]["micro_f1"])


def test_teacher_outputs_are_cached_once_and_reused(workdir):
    before = sorted(cache_dir().glob("*/entry.json"))
    assert before  # train + unlabeled texts with every layer, val and test logits: from the run above
    args = ["--teacher", workdir / "teacher", "--data", workdir / "data", "--epochs", "1", "--filters", "8"]
    result = run("distill", "textcnn", *args, "--out", workdir / "student-kd", "--unlabeled", workdir / "unlabeled.txt")
    assert result.exit_code == 0
    assert sorted(cache_dir().glob("*/entry.json")) == before  # fewer layers: served by the entry with all of them
    result = run("distill", "textcnn", *args, "--out", workdir / "student-kd-labelled-only")
    assert result.exit_code == 0
    assert len(sorted(cache_dir().glob("*/entry.json"))) == len(before) + 1  # other texts: one new entry


def test_hint_states_too_large_to_cache_are_computed_per_batch_to_the_same_student(workdir):
    """--hint-cache-gb 0: the teacher computes its hint-layer states for each batch (in fp32, not cached in fp16), and
    the student learns what it learns from the cached states."""
    args = ["distill", "textcnn", "--teacher", workdir / "teacher", "--data", workdir / "data", "--loss", "soft_kd=1",
            "--loss", "hint_mse=1", "--intermediate-epochs", "1", "--epochs", "4", "--filters", "16", "--dropout", "0"]
    for out, extra in (("hint-cached", []), ("hint-per-batch", ["--hint-cache-gb", "0"])):
        result = run(*args, *extra, "--out", workdir / out)
        assert result.exit_code == 0, result.output
    cached, per_batch = (load_artifact(workdir / out).manifest for out in ("hint-cached", "hint-per-batch"))
    assert cached["distillation"]["plan"]["hint_states"] == "cached"
    assert per_batch["distillation"]["plan"]["hint_states"] == "computed per batch"
    assert "--hint-cache-gb 0.0" in per_batch["lineage"]["command"]
    losses = [[epoch["train_loss"] for epoch in manifest["training"]["history"]] for manifest in (cached, per_batch)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)  # fp16 rounding of the cached states apart
    assert abs(per_batch["metrics"]["test"]["micro_f1"] - cached["metrics"]["test"]["micro_f1"]) < 0.02


@pytest.mark.parametrize("head", ["rnn", "bilstm_cnn_attn"])
def test_teachers_with_recurrent_heads_learn_and_teach_a_student(workdir, head):
    """The BERT-RNN and the BERT → BiLSTM + CNN → self-attention heads, with their kernel sizes set, train and teach
    a TextCNN through every loss."""
    teacher, student = workdir / f"teacher-{head}", workdir / f"student-{head}"
    result = run("train-teacher", "--data", workdir / "data", "--out", teacher, *TINY_TEACHER, "--epochs", "3",
                 "--head", head, "--kernel-sizes", "1,3", "--filters", "16", "--rnn-hidden", "24")
    assert result.exit_code == 0, result.output
    manifest = load_artifact(teacher, kind="teacher").manifest
    head_config = {key: manifest["architecture"]["config"].get(key) for key in ("head", "kernel_sizes", "num_filters",
                                                                                  "rnn_hidden")}
    assert head_config == {"head": head, "rnn_hidden": 24, **({"kernel_sizes": [1, 3], "num_filters": 16} if head
                                                              == "bilstm_cnn_attn" else dict.fromkeys(
                                                                  ("kernel_sizes", "num_filters")))}
    assert manifest["metrics"]["test"]["micro_f1"] > chance_micro_f1(workdir / "data") + 0.1
    result = run("distill", "textcnn", "--teacher", teacher, "--data", workdir / "data", "--out", student,
                 "--loss", "soft_kd=1", "--loss", "hard_bce=1", "--loss", "hint_mse=1", "--loss",
                 "attention_transfer=1", "--epochs", "4", "--batch-size", "32", "--lr", "3e-3",
                 "--embedding-dim", "32", "--filters", "16")
    assert result.exit_code == 0, result.output
    distilled = load_artifact(student, kind="student").manifest
    assert distilled["metrics"]["test"]["micro_f1"] > chance_micro_f1(workdir / "data") + 0.1
    assert distilled["metrics"]["agreement_with_teacher"]["test"] > 0.5


def test_a_student_learns_from_two_teachers_and_the_tfidf_baseline(workdir):
    """Multi-teacher distillation: a second BERT teacher and the TF-IDF baseline join the teacher's soft targets
    with their weights; the manifest and lineage name all three."""
    second = workdir / "teacher-second"
    assert run("train-teacher", "--data", workdir / "data", "--out", second, *TINY_TEACHER, "--epochs", "3",
               "--head", "cls_mlp").exit_code == 0
    result = run("distill", "textcnn", "--teacher", workdir / "teacher", "--also-teacher", second, "--tfidf-teacher",
                 "--teacher-weights", "2,1,1", "--data", workdir / "data", "--out", workdir / "student-three", "--loss",
                 "soft_kd=1", "--loss", "hard_bce=1", "--loss", "hint_mse=1", "--epochs", "4", "--batch-size", "32",
                 "--lr", "3e-3", "--embedding-dim", "32", "--filters", "16")
    assert result.exit_code == 0, result.output
    manifest = load_artifact(workdir / "student-three", kind="student").manifest
    teachers = manifest["distillation"]["teachers"]
    assert [(one["teacher"], one.get("sha256"), one["weight"]) for one in teachers[:2]] == [
        (str(workdir / "teacher"), load_artifact(workdir / "teacher").sha256, 0.5),
        (str(second), load_artifact(second).sha256, 0.25)]
    assert teachers[2]["teacher"] in ("tfidf-lr", "tfidf-nb") and teachers[2]["weight"] == 0.25
    assert teachers[2]["val_micro_f1"] > chance_micro_f1(workdir / "data")
    assert [parent["kind"] for parent in manifest["lineage"]["parents"]] == ["teacher", "teacher", "dataset"]
    assert manifest["metrics"]["test"]["micro_f1"] > chance_micro_f1(workdir / "data") + 0.1


def test_teacher_from_a_local_checkpoint(workdir, tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set("".join(
        load_dataset(workdir / "data").texts("train"))))
    checkpoint = tmp_path / "ckpt"
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64), add_pooling_layer=False).save_pretrained(checkpoint)
    (checkpoint / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    result = run("train-teacher", "--data", workdir / "data", "--out", tmp_path / "t", "--init", checkpoint,
                 "--epochs", "1")
    assert result.exit_code == 0, result.output
    manifest = load_artifact(tmp_path / "t").manifest
    assert manifest["tokenizer"]["type"] == "wordpiece" and manifest["architecture"]["config"]["bert"]["hidden_size"] == 32
    assert manifest["init"] == str(checkpoint)


@pytest.mark.parametrize("args, message", [
    (["--loss", "fancy_kd=1"], "unknown"),
    (["--loss", "soft_kd=1", "--loss", "hint_mse=1", "--hint-layer", "5"], "--hint-layer 5"),
    (["--loss", "soft_kd=x"], "NAME=WEIGHT"),
    (["--loss", "soft_kd=0"], "non-zero weight"),
    (["--loss", "hint_mse=1"], "needs soft_kd or hard_bce"),
    (["--student", "tinybert", "--loss", "soft_kd=1", "--loss", "hint_mse=1"], "does not apply to a tinybert"),
    (["--student", "textcnn", "--loss", "soft_kd=1", "--loss", "attention_mse=1"], "does not apply to a textcnn"),
    (["--student", "tinybert", "--loss", "soft_kd=1", "--loss", "hidden_mse=1", "--layer-map", "1:7"],
     "teacher layer 7"),
    (["--student", "tinybert", "--general-epochs", "1"], "general distillation needs"),
    (["--student", "tinybert", "--heads", "5"], "multiple of --heads 5"),
    (["--tfidf-teacher", "--teacher-weights", "1,1,1"], "--teacher-weights needs 2 weights"),
    (["--teacher-weights", "0"], "not all 0"),
])
def test_bad_distillation_options_are_one_line_errors(workdir, tmp_path, args, message):
    student, args = (args[1], args[2:]) if args[0] == "--student" else ("textcnn", args)
    result = run("distill", student, "--teacher", workdir / "teacher", "--data", workdir / "data", "--out",
                 tmp_path / "s", *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_a_dataset_is_not_a_teacher_and_outputs_are_not_overwritten(workdir):
    result = run("distill", "textcnn", "--teacher", workdir / "data", "--data", workdir / "data", "--out",
                 workdir / "x")
    assert result.exit_code == 2 and "dataset artifact, but a teacher artifact is needed" in result.output
    result = run("train-teacher", "--data", workdir / "data", "--out", workdir / "teacher", *TINY_TEACHER)
    assert result.exit_code == 2 and "--force" in result.output
    assert np.isfinite(load_artifact(workdir / "teacher").manifest["metrics"]["test"]["micro_f1"])


TINY_TINYBERT = ["--layers", "1", "--hidden", "32", "--heads", "2", "--intermediate", "64",
                 "--batch-size", "32", "--lr", "3e-3"]


def test_tinybert_with_every_layer_loss_agrees_with_its_teacher(workdir):
    """Teacher 4 heads, student 2: attention_mse averages heads; two stages as in TinyBERT."""
    result = run("distill", "tinybert", "--teacher", workdir / "teacher", "--data", workdir / "data", "--out",
                 workdir / "tinybert", "--loss", "soft_kd=1", "--loss", "embedding_mse=1", "--loss", "hidden_mse=1",
                 "--loss", "attention_mse=1", "--intermediate-epochs", "2", "--epochs", "10", *TINY_TINYBERT)
    assert result.exit_code == 0, result.output
    manifest = load_artifact(workdir / "tinybert", kind="student").manifest
    assert manifest["architecture"]["name"] == "tinybert"
    assert manifest["tokenizer"] == load_artifact(workdir / "teacher").manifest["tokenizer"]
    assert manifest["metrics"]["test"]["micro_f1"] > chance_micro_f1(workdir / "data") + 0.2
    assert manifest["metrics"]["agreement_with_teacher"]["test"] > 0.6
    stages = manifest["distillation"]["stages"]
    assert [stage["stage"] for stage in stages] == ["intermediate", "main"]
    assert stages[0]["losses"] == ["attention_mse", "embedding_mse", "hidden_mse"] and stages[1]["losses"] == ["soft_kd"]
    assert manifest["distillation"]["plan"]["layer_pairs"] == [[1, 1]]
    assert [(m["loss"], m["student"], m["teacher"], m["projection"]) for m in manifest["distillation"]["plan"][
        "matches"]] == [("soft_kd", "logits", "logits", None), ("embedding_mse", "hidden.0", "hidden.0", "hidden"),
                        ("hidden_mse", "hidden.1", "hidden.1", "hidden"), ("attention_mse", "attention.1",
                                                                           "attention.1", None)]


def test_tinybert_on_single_label_data_with_general_distillation_and_init_from_a_student(tmp_path):
    """Softmax KD on single-label data; general distillation on unlabelled texts; a second student starting from the
    first one's encoder."""
    multi = tmp_path / "multi.jsonl"
    generate_demo_corpus(multi, n_items=600, seed=5)
    rows = [json.loads(line) for line in multi.read_text("utf-8").splitlines()]
    single = tmp_path / "single.jsonl"
    single.write_text("".join(json.dumps({"text": r["text"], "labels": r["labels"][:1]}, ensure_ascii=False) + "\n"
                              for r in rows), "utf-8")
    general = tmp_path / "general.txt"
    general.write_text("\n".join(r["text"] for r in rows[:100]), "utf-8")
    assert run("data", "prepare", single, "--out", tmp_path / "data").exit_code == 0
    assert load_artifact(tmp_path / "data").manifest["multi_label"] is False
    assert run("train-teacher", "--data", tmp_path / "data", "--out", tmp_path / "teacher",
               *TINY_TEACHER).exit_code == 0
    common = ["--teacher", tmp_path / "teacher", "--data", tmp_path / "data", "--epochs", "6", *TINY_TINYBERT]
    result = run("distill", "tinybert", *common, "--out", tmp_path / "general", "--loss", "soft_kd=1", "--loss", "hidden_mse=1",
                 "--loss", "attention_mse=1", "--general-texts", general, "--general-epochs", "1")
    assert result.exit_code == 0, result.output
    first = load_artifact(tmp_path / "general").manifest
    assert [stage["stage"] for stage in first["distillation"]["stages"]] == ["general", "main"]
    assert first["distillation"]["stages"][0]["texts"] == 100
    result = run("distill", "tinybert", *common, "--out", tmp_path / "student", "--init", tmp_path / "general", "--loss",
                 "soft_kd=1", "--loss", "hard_bce=1")
    assert result.exit_code == 0, result.output
    manifest = load_artifact(tmp_path / "student").manifest
    assert manifest["multi_label"] is False and manifest["distillation"]["plan"]["init"] == str(tmp_path / "general")
    assert load_artifact(tmp_path / "general").sha256 in [p["sha256"] for p in manifest["lineage"]["parents"]]
    assert manifest["metrics"]["agreement_with_teacher"]["test"] > 0.6
    # a teacher artifact is neither a pretrain artifact nor a TinyBERT student
    result = run("distill", "tinybert", *common, "--out", tmp_path / "bad", "--init", tmp_path / "teacher")
    assert result.exit_code == 2 and "pretrained or student artifact is needed" in result.output
