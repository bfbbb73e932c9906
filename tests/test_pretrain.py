"""`mobclf pretrain`: whole-word masking, a tiny MLM run that learns, a teacher started from it, and resuming."""

from __future__ import annotations

import json
import math
import random
import re

import pytest
import torch
from click.testing import CliRunner
from transformers import BertForMaskedLM

from mobclf.artifacts import load_artifact
from mobclf.cli import main
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.errors import UserError
from mobclf.text import build_tokenizer
from mobclf.train.batching import TokenizedTexts
from mobclf.train.loop import FitConfig
from mobclf.train.masking import IGNORE, mask_tokens, word_ids
from mobclf.stages import PretrainConfig
from mobclf.train import pretrain as pretrain_stage
from mobclf.train.pretrain import _unigram_loss

TINY = {"max_length": 32, "layers": 2, "hidden": 32, "heads": 2, "val_fraction": 0.1, "device": "cpu"}


def pretrain(corpus, out, fit_config, **settings):
    """The pretrain stage with its settings as keywords."""
    return pretrain_stage.run(PretrainConfig(fit=fit_config, **settings), corpus=corpus, out=out)
TINY_CLI = ["--max-length", "32", "--layers", "2", "--hidden", "32", "--heads", "2", "--val-fraction", "0.1",
            "--epochs", "4", "--lr", "3e-3", "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def fit_config(**changes) -> FitConfig:
    return FitConfig(**{"epochs": 3, "batch_size": 32, "lr": 3e-3, "seed": 0, **changes})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~300 short, repetitive Chinese texts: enough for a 2-layer BERT to learn something in a few epochs."""
    rng = random.Random(0)
    cities, firms = ["北京", "上海", "广州", "深圳", "杭州", "成都"], ["汽车公司", "手机厂商", "足球俱乐部", "银行"]
    events = ["发布了新款产品", "宣布降价促销", "赢得了比赛", "公布了季度财报", "召开了发布会"]
    texts = {f"{rng.choice(cities)}的{rng.choice(firms)}今天{rng.choice(events)}，{rng.choice(cities)}市民很关注"
             for _ in range(2000)}
    path = tmp_path_factory.mktemp("corpus") / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in sorted(texts)[:300]), "utf-8")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, corpus):
    """A dataset artifact and a model pre-trained on the corpus plus the dataset's train texts, via the CLI."""
    root = tmp_path_factory.mktemp("pretrain")
    generate_demo_corpus(root / "news.jsonl", n_items=300, seed=1)
    assert run("data", "prepare", root / "news.jsonl", "--out", root / "data").exit_code == 0
    result = run("pretrain", "--corpus", corpus, "--data", root / "data", "--out", root / "pt", *TINY_CLI)
    assert result.exit_code == 0, result.output
    assert "pretrained artifact written to" in result.output and "val MLM loss" in result.output
    (root / "pretrain.txt").write_text(result.output, "utf-8")
    return root


def test_whole_words_are_masked_together_and_special_tokens_never():
    words = torch.tensor([-1, 0, 0, 1, 2, 2, 2, -1, -1]).repeat(4000, 1)  # [CLS] w0 w0 w1 w2 w2 w2 [SEP] [PAD]
    input_ids = torch.randint(5, 100, words.shape)
    masked, labels = mask_tokens(input_ids, words, mask_prob=0.15, mask_id=4, replacements=torch.arange(5, 100),
                                 generator=torch.Generator().manual_seed(0))
    chosen = labels != IGNORE
    for word in range(3):
        columns = chosen[:, words[0] == word]
        assert (columns == columns[:, :1]).all()  # a word is masked in all of its tokens or in none
    assert not chosen[words == -1].any() and (masked[words == -1] == input_ids[words == -1]).all()
    assert (labels[chosen] == input_ids[chosen]).all()
    assert 0.13 < chosen[:, [1, 3, 4]].float().mean() < 0.17  # one draw per word
    to_mask = (masked[chosen] == 4).float().mean()
    kept = (masked[chosen] == input_ids[chosen]).float().mean()
    assert 0.76 < to_mask < 0.84 and 0.07 < kept < 0.13 and 0.07 < 1 - to_mask - kept < 0.13
    assert (masked[chosen & (masked != 4)] >= 5).all()  # random replacements are never special tokens


def test_word_ids_follow_jieba_words():
    texts = ["我爱北京天安门", "iPhone15发布"]
    tokenizer = build_tokenizer("char", texts, max_length=16, add_special_tokens=True)
    batch = TokenizedTexts(tokenizer, texts, offsets=True).batch(torch.arange(2))
    assert word_ids(texts, batch).tolist() == [[-1, 0, 1, 2, 2, 3, 3, 3, -1],  # 我 爱 北京 天安门
                                               [-1, 0, 1, 1, -1, -1, -1, -1, -1]]  # iphone15 发布, padded
    assert word_ids(texts, batch, whole_word=False)[0].tolist() == [-1, 0, 1, 2, 3, 4, 5, 6, -1]


def test_pretraining_lowers_the_val_loss_and_writes_a_hf_checkpoint(workdir):
    artifact = load_artifact(workdir / "pt", kind="pretrained")
    manifest = artifact.manifest
    assert manifest["metrics"]["val_mlm_loss"] < manifest["metrics"]["val_mlm_loss_initial"] - 0.5
    metrics = manifest["metrics"]
    assert metrics["uses_context"] == (metrics["val_mlm_loss"] <= metrics["val_unigram_loss"] - 0.1)
    assert manifest["architecture"]["name"] == "bert-mlm" and manifest["masking"]["whole_word"] is True
    assert manifest["corpus"][0]["texts"] == 300 and manifest["dataset_texts"] > 0
    assert [p["kind"] for p in manifest["lineage"]["parents"]] == ["dataset"]
    assert manifest["training"]["resumed_from"] is None
    model = BertForMaskedLM.from_pretrained(str(artifact.file("checkpoint")), local_files_only=True)
    assert model.config.hidden_size == 32 and (artifact.file("checkpoint") / "vocab.txt").is_file()
    assert not (workdir / ".pt.train-state").exists()


def test_the_val_mlm_loss_is_printed_and_recorded_as_a_loss_and_the_lowest_is_kept(workdir):
    output = re.sub(r" \S+\.py:\d+ ", " ", " ".join((workdir / "pretrain.txt").read_text("utf-8").split()))
    assert "-MLM" not in output and not re.search(r"loss -\d", output)
    printed = [float(loss) for loss in re.findall(r"pretrain: epoch \d+ loss [\d.]+ val MLM loss ([\d.]+)", output)]
    manifest = load_artifact(workdir / "pt").manifest
    history = [epoch["val_score"] for epoch in manifest["training"]["history"]]
    assert len(printed) == len(history) == 4 and printed == pytest.approx(history, abs=1e-4)
    assert min(history) > 0 and manifest["training"]["best_epoch"] == 1 + history.index(min(history))
    assert manifest["metrics"]["val_mlm_loss"] == pytest.approx(min(history), rel=1e-5)


def test_a_teacher_starts_from_the_pretrained_artifact(workdir):
    result = run("train-teacher", "--data", workdir / "data", "--out", workdir / "teacher", "--init", workdir / "pt",
                 "--epochs", "1", "--max-length", "24")
    assert result.exit_code == 0, result.output
    manifest = load_artifact(workdir / "teacher", kind="teacher").manifest
    pretrained = load_artifact(workdir / "pt")
    assert [(p["kind"], p["sha256"]) for p in manifest["lineage"]["parents"]][1] == ("pretrained", pretrained.sha256)
    assert manifest["tokenizer"]["type"] == "char" and manifest["tokenizer"]["max_length"] == 24
    assert manifest["architecture"]["config"]["bert"]["num_hidden_layers"] == 2
    result = run("train-teacher", "--data", workdir / "data", "--out", workdir / "t2", "--init", workdir / "pt",
                 "--max-length", "65")
    assert result.exit_code == 2 and "--max-length 64 or less" in result.output


def interrupt_at_step(monkeypatch, step: int) -> None:
    """Make the optimizer raise KeyboardInterrupt (as Ctrl-C would) when asked for its ``step``-th update."""
    original, calls = torch.optim.AdamW.step, []

    def interrupted_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupted_step)


def test_an_interrupted_run_resumes_where_it_stopped(corpus, tmp_path, monkeypatch):
    reference = pretrain([corpus], tmp_path / "reference", fit_config=fit_config(save_every=1), **TINY)
    for out in ("pt", "pt2"):
        with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
            interrupt_at_step(patch, 12)  # epoch 2 of 9 steps each
            pretrain([corpus], tmp_path / out, fit_config=fit_config(save_every=1), **TINY)
        assert (tmp_path / f".{out}.train-state" / "pretrain.pt").is_file() and not (tmp_path / out).exists()

    with pytest.raises(UserError, match=r"other settings \(mask_prob\).*--restart"):
        pretrain([corpus], tmp_path / "pt", fit_config=fit_config(save_every=1), mask_prob=0.3, **TINY)
    saved = tmp_path / ".pt.train-state" / "settings.json"
    settings = json.loads(saved.read_text("utf-8"))
    assert settings.pop("whole_word") is True  # saved by a mobclf without this setting: at its default, the same run
    saved.write_text(json.dumps(settings), "utf-8")
    resumed = pretrain([corpus], tmp_path / "pt", fit_config=fit_config(save_every=1), **TINY)
    assert resumed.manifest["training"]["resumed_from"] == 11
    assert resumed.manifest["metrics"] == pytest.approx(reference.manifest["metrics"], rel=1e-5)
    assert not (tmp_path / ".pt.train-state").exists()

    restarted = pretrain([corpus], tmp_path / "pt2", fit_config=fit_config(save_every=1, restart=True), **TINY)
    assert restarted.manifest["training"]["resumed_from"] is None
    assert restarted.manifest["metrics"] == pytest.approx(reference.manifest["metrics"], rel=1e-5)


def test_a_corpus_that_changes_between_its_two_reads_is_refused(corpus, tmp_path, monkeypatch):
    """pretrain reads its corpus twice, a text at a time: to count and name the distinct texts, then to write them
    into the run's state folder (from where training reads them memory-mapped)."""
    copy = tmp_path / "texts.jsonl"
    copy.write_text(corpus.read_text("utf-8"), "utf-8")
    reads, read = [], pretrain_stage.iter_texts

    def read_then_edit(path):
        reads.append(path)
        if len(reads) == 2:  # the scan came first; this is the write
            copy.write_text(copy.read_text("utf-8").replace("北京", "南京"), "utf-8")
        return read(path)

    monkeypatch.setattr(pretrain_stage, "iter_texts", read_then_edit)
    with pytest.raises(UserError, match="changed while it was being read"):
        pretrain([copy], tmp_path / "pt", fit_config=fit_config(epochs=1), **TINY)
    assert not (tmp_path / "pt").exists()
    assert not list((tmp_path / ".pt.train-state").glob("corpus.arrow*"))


def test_an_empty_corpus_file_is_named(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    result = run("pretrain", "--corpus", empty, "--out", tmp_path / "pt")
    assert result.exit_code == 2 and f"{empty}: no texts" in result.output and "Traceback" not in result.output
    result = run("pretrain", "--out", tmp_path / "pt")
    assert result.exit_code == 2 and "--corpus" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["empty.txt"]


def test_a_tinybert_student_starts_from_a_pretrained_artifact_that_shares_the_teachers_vocabulary(workdir, corpus,
                                                                                                  tmp_path):
    assert run("train-teacher", "--data", workdir / "data", "--out", tmp_path / "teacher", "--init", workdir / "pt",
               "--epochs", "1", "--max-length", "24").exit_code == 0
    student = ["distill", "tinybert", "--teacher", tmp_path / "teacher", "--data", workdir / "data",
               "--epochs", "1", "--loss", "soft_kd=1", "--loss", "hidden_mse=1"]
    result = run(*student, "--init", workdir / "pt", "--out", tmp_path / "student")
    assert result.exit_code == 0, result.output
    manifest = load_artifact(tmp_path / "student", kind="student").manifest
    assert manifest["architecture"]["config"]["bert"]["hidden_size"] == 32  # the checkpoint's geometry, not 312
    assert load_artifact(workdir / "pt").sha256 in [p["sha256"] for p in manifest["lineage"]["parents"]]
    # a checkpoint pre-trained with its own vocabulary would read the teacher's ids as other tokens
    other = pretrain([corpus], tmp_path / "other", fit_config=FitConfig(epochs=1, batch_size=32), **TINY)
    result = run(*student, "--init", other.path, "--out", tmp_path / "mismatch")
    assert result.exit_code == 2 and "vocabulary differs from the teacher's" in result.output


def test_pretraining_continues_from_an_earlier_artifact(workdir, corpus, tmp_path):
    first = load_artifact(workdir / "pt")
    result = run("pretrain", "--corpus", corpus, "--init", workdir / "pt", "--out", tmp_path / "more", *TINY_CLI[:2],
                 "--val-fraction", "0.1", "--epochs", "1", "--lr", "1e-3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    more = load_artifact(tmp_path / "more").manifest
    assert more["tokenizer"] == first.manifest["tokenizer"]
    assert more["architecture"] == first.manifest["architecture"]
    assert first.sha256 in [p["sha256"] for p in more["lineage"]["parents"]]
    # starting from the trained weights: its first val loss is already far below an untrained model's
    assert more["metrics"]["val_mlm_loss_initial"] < first.manifest["metrics"]["val_mlm_loss_initial"] - 0.5
    result = run("pretrain", "--corpus", corpus, "--init", workdir / "pt", "--tokenizer-dir", workdir / "pt" /
                 "tokenizer", "--out", tmp_path / "both")
    assert result.exit_code == 2 and "leave out --tokenizer-dir" in result.output


def test_the_frequency_only_loss_by_hand():
    # vocabulary of 8, training tokens 5 5 6 → add-one counts [1 1 1 1 1 3 2 1], 11 in all
    counts = torch.bincount(torch.tensor([5, 5, 6]), minlength=8)
    labels = torch.tensor([[IGNORE, 5, IGNORE, 6]])
    assert _unigram_loss(counts, labels) == pytest.approx(-(math.log(3 / 11) + math.log(2 / 11)) / 2)
