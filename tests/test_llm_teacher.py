"""The LLM teacher end to end on a tiny, randomly initialised Qwen2 built here: LoRA fine-tuning with a head on the
last token, adapters merged into the artifact, and distillation into a TextCNN."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import chance_micro_f1, run
from safetensors import safe_open
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import BertConfig, BertModel, Qwen2Config, Qwen2ForCausalLM

from mobclf.artifacts import load_artifact
from mobclf.data.dataset import load_dataset
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.models import load_classifier
from mobclf.models.causal_lm import CausalLmClassifier
from mobclf.text import load_tokenizer
from mobclf.train.classifier import val_micro_f1

END = "<|endoftext|>"
TINY_LLM_TEACHER = ["--max-length", "48", "--lora-rank", "16", "--epochs", "8", "--batch-size", "32", "--lr", "5e-3"]


def tiny_qwen2_checkpoint(directory, texts: list[str]) -> None:
    """What a local Qwen2 checkpoint directory holds, at toy size: config and weights of a Qwen2ForCausalLM, a
    byte-level BPE ``tokenizer.json`` and the ``tokenizer_config.json`` naming its end-of-text token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=[END],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=tokenizer.get_vocab_size(), hidden_size=48, intermediate_size=96,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                 max_position_embeddings=128)).save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": END, "pad_token": END}),
                                                     encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Single-label headlines (as THUCNews and TNEWS are), a tiny Qwen2 checkpoint, and the teacher tuned from it."""
    root = tmp_path_factory.mktemp("llm")
    generate_demo_corpus(root / "multi.jsonl", n_items=800, seed=5)
    rows = [json.loads(line) for line in (root / "multi.jsonl").read_text("utf-8").splitlines()]
    (root / "news.jsonl").write_text("".join(json.dumps({"text": row["text"], "labels": row["labels"][:1]},
                                                        ensure_ascii=False) + "\n" for row in rows), "utf-8")
    assert run("data", "prepare", root / "news.jsonl", "--out", root / "data").exit_code == 0
    tiny_qwen2_checkpoint(root / "qwen2", load_dataset(root / "data").texts("train"))
    result = run("train-llm-teacher", "--data", root / "data", "--checkpoint", root / "qwen2", "--out",
                 root / "teacher", *TINY_LLM_TEACHER)
    assert result.exit_code == 0, result.output
    return root


def test_a_lora_tuned_qwen2_learns_and_its_artifact_holds_the_merged_model(workdir):
    teacher = load_artifact(workdir / "teacher", kind="teacher")
    manifest = teacher.manifest
    assert manifest["architecture"]["name"] == "qwen2" and manifest["tokenizer"]["type"] == "checkpoint"
    assert manifest["architecture"]["config"]["lora"]["rank"] == 16
    assert manifest["metrics"]["test"]["micro_f1"] > chance_micro_f1(workdir / "data") + 0.1
    with safe_open(str(teacher.file("model.safetensors")), "pt") as weights:
        assert not [name for name in weights.keys() if "lora" in name]  # merged: a plain Qwen2 and its head
    model, tokenizer = load_classifier(teacher), load_tokenizer(teacher.file("tokenizer"))
    assert isinstance(model, CausalLmClassifier) and tokenizer.encode("").ids == [tokenizer.end_id]
    # the merged model scores on val what the adapters scored at their best epoch
    best = manifest["training"]["history"][manifest["training"]["best_epoch"] - 1]["val_score"]
    assert val_micro_f1(model, tokenizer, load_dataset(workdir / "data"), "cpu") == pytest.approx(best, abs=1e-6)
    texts = load_dataset(workdir / "data").texts("test")[:12]
    batch = tokenizer.encode_batch(texts)
    with torch.no_grad():  # right padding changes no text's logits: the head reads each text's own last token
        alone = torch.cat([model(**{key: tokenizer.encode_batch([text])[key] for key in ("input_ids",
                                                                                          "attention_mask")})
                           for text in texts])
        assert torch.allclose(model(batch["input_ids"], batch["attention_mask"]), alone, atol=1e-4)
    result = run("eval", "--model", workdir / "teacher", "--data", workdir / "data", "--split", "test")
    assert result.exit_code == 0, result.output
    assert f"{manifest['metrics']['test']['micro_f1']:.4f}" in result.output  # the saved model scores as recorded


def test_the_llm_teacher_teaches_a_textcnn_through_its_predictions(workdir):
    result = run("distill", "textcnn", "--teacher", workdir / "teacher", "--data", workdir / "data", "--out",
                 workdir / "student", "--loss", "soft_kd=1", "--loss", "hard_bce=1", "--epochs", "4",
                 "--batch-size", "32", "--lr", "3e-3", "--embedding-dim", "32", "--filters", "16")
    assert result.exit_code == 0, result.output
    manifest = load_artifact(workdir / "student", kind="student").manifest
    assert manifest["metrics"]["test"]["micro_f1"] > chance_micro_f1(workdir / "data") + 0.1
    assert manifest["metrics"]["agreement_with_teacher"]["test"] > 0.5
    assert manifest["lineage"]["parents"][0]["sha256"] == load_artifact(workdir / "teacher").sha256


@pytest.mark.parametrize("args, message", [
    (["textcnn", "--loss", "soft_kd=1", "--loss", "hint_mse=1"], "hint_mse need a BERT teacher"),
    (["tinybert"], "a TinyBERT takes its BERT teacher's tokenizer and layers"),
])
def test_what_an_llm_teacher_cannot_teach_is_one_line(workdir, tmp_path, args, message):
    result = run("distill", args[0], "--teacher", workdir / "teacher", "--data", workdir / "data", "--out",
                 tmp_path / "s", *args[1:])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_bad_checkpoints_are_one_line_errors(workdir, tmp_path):
    bert = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(bert)
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).write_bytes((workdir / "qwen2" / name).read_bytes())
    cases = [(["--checkpoint", bert], "is a 'bert' checkpoint; the LLM teacher takes Qwen2"),
             (["--checkpoint", no_tokenizer], "no tokenizer_config.json"),
             (["--checkpoint", workdir / "qwen2", "--lora-modules", "query"], "--lora-modules: Target modules")]
    for args, message in cases:
        result = run("train-llm-teacher", "--data", workdir / "data", "--out", tmp_path / "t", *args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
        assert not (tmp_path / "t").exists()
