"""Bad-input suite, artifacts and the CLI: outputs mobclf may not replace, names that lead outside an artifact,
edited manifests, symbolic links, wrong weights, non-finite options, full disks and concurrent writers. Every case
must be refused with exit status 2 and one line naming the path, and leave every user file byte-identical
(``tests/bad_inputs.py``). Positive tests at the end pin what must keep working."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs import Refusal
from conftest import run

from mobclf.artifacts import MANIFEST, load_artifact, seal, sha256_file
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.errors import UserError
from mobclf.train.loop import FitConfig, fit

TEACHER = ["--layers", "1", "--hidden", "32", "--heads", "2", "--max-length", "24", "--epochs", "1"]
STUDENT = ["--embedding-dim", "16", "--filters", "8", "--epochs", "1"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A corpus, dataset, teacher, TextCNN student and android bundle, made with paths relative to their folder
    (the bundle is exported from another working directory, as a user in another folder would)."""
    root = tmp_path_factory.mktemp("made")
    generate_demo_corpus(root / "news.jsonl", n_items=300, seed=5)
    previous = Path.cwd()
    os.chdir(root)
    try:
        for args in (["data", "prepare", "news.jsonl", "--out", "ds"],
                     ["train-teacher", "--data", "ds", "--out", "teacher", *TEACHER],
                     ["distill", "textcnn", "--teacher", "teacher", "--data", "ds", "--out", "student", *STUDENT]):
            assert run(*args).exit_code == 0, args
    finally:
        os.chdir(previous)
    assert run("export", "--from", root / "student", "--target", "android", "--out", root / "bundle",
               "--parity-texts", "20").exit_code == 0
    return root


def copy(made: Path, folder: Path, *names: str) -> None:
    for name in names:
        source = made / name
        shutil.copytree(source, folder / name) if source.is_dir() else shutil.copy(source, folder / name)


def rewrite_manifest(artifact: Path, change, reseal: bool = True) -> None:
    """Edit a manifest as a hostile user would: ``change(manifest)``, then (``reseal``) a matching seal."""
    manifest = json.loads((artifact / MANIFEST).read_text("utf-8"))
    change(manifest)
    if reseal:
        manifest["manifest_sha256"] = seal(manifest)
    (artifact / MANIFEST).write_text(json.dumps(manifest), "utf-8")


def recheck(artifact: Path, name: str) -> None:
    """Record a file's new checksum in the manifest (and reseal), so that only the check under test can fail."""
    rewrite_manifest(artifact, lambda m: m["files"].__setitem__(name, sha256_file(artifact / name)))


# ---- setups: each prepares ``folder`` (a fresh tmp dir) from the ``made`` artifacts ------------------------------

def web_app(made, folder):
    copy(made, folder, "news.jsonl")
    (folder / "app" / "icons").mkdir(parents=True)
    (folder / "app" / MANIFEST).write_text('{"name": "x"}')
    (folder / "app" / "index.html").write_text("hi")


def user_file_in_dataset(made, folder):
    copy(made, folder, "news.jsonl", "ds")
    (folder / "ds" / "notes.csv").write_text("mine\n")


def user_folder_in_dataset(made, folder):
    copy(made, folder, "news.jsonl", "ds")
    (folder / "ds" / "extra").mkdir()


def edited_dataset(made, folder):
    copy(made, folder, "news.jsonl", "ds")
    with open(folder / "ds" / "train.arrow", "a", encoding="utf-8") as handle:
        handle.write('{"text": "我的一行", "labels": ["我的"]}\n')


def corpus_and_dataset(made, folder):
    copy(made, folder, "news.jsonl", "ds")


def student_and_data(made, folder):
    copy(made, folder, "ds", "student")


def student_bundle_and_data(made, folder):
    copy(made, folder, "ds", "student", "bundle")


def edited(name, change, reseal=False):
    def setup(made, folder):
        copy(made, folder, "ds", "student", "bundle")
        rewrite_manifest(folder / name, change, reseal)
    return setup


def manifest_text(text):
    def setup(made, folder):
        copy(made, folder, "ds", "student")
        (folder / "student" / MANIFEST).write_text(text)
    return setup


def vocab_outside(made, folder):
    copy(made, folder, "ds", "student")
    spec_path = folder / "student" / "tokenizer" / "tokenizer.json"
    spec = json.loads(spec_path.read_text("utf-8"))
    spec["vocab_file"] = "../../ds/train.arrow"
    spec_path.write_text(json.dumps(spec), "utf-8")
    recheck(folder / "student", "tokenizer/tokenizer.json")


def linked_file(made, folder):
    copy(made, folder, "ds", "student")
    (folder / "outside.jsonl").write_bytes((folder / "ds" / "test.arrow").read_bytes())
    (folder / "ds" / "test.arrow").unlink()
    (folder / "ds" / "test.arrow").symlink_to(folder / "outside.jsonl")


def linked_folder(made, folder):
    copy(made, folder, "ds", "student")
    shutil.move(folder / "student" / "tokenizer", folder / "tokenizer-elsewhere")
    (folder / "student" / "tokenizer").symlink_to(folder / "tokenizer-elsewhere")


def dangling_link(made, folder):
    copy(made, folder, "ds", "student")
    (folder / "student" / "stray").symlink_to(folder / "nowhere")


def swapped_weights(made, folder):
    copy(made, folder, "ds", "student")
    shutil.copy(made / "teacher" / "model.safetensors", folder / "student" / "model.safetensors")
    recheck(folder / "student", "model.safetensors")


def other_dataset_at_lineage_path(made, folder):
    """The student's lineage names its dataset by absolute path: put another (valid) dataset there."""
    copy(made, folder, "news.jsonl", "student")
    student = json.loads((folder / "student" / MANIFEST).read_text("utf-8"))
    recorded = next(p["path"] for p in student["lineage"]["parents"] if p["kind"] == "dataset")
    rows = [json.loads(line) for line in (folder / "news.jsonl").read_text("utf-8").splitlines()][:200]
    (folder / "other.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert run("data", "prepare", folder / "other.jsonl", "--out", folder / "other-ds").exit_code == 0
    rewrite_manifest(folder / "student", lambda m: [p.update(path=str(folder / "other-ds"))
                                                    for p in m["lineage"]["parents"] if p["kind"] == "dataset"])
    assert recorded != str(folder / "other-ds")


def corpus_only(made, folder):
    copy(made, folder, "news.jsonl")


def cache_under_a_file(made, folder):
    copy(made, folder, "ds", "teacher")
    (folder / "cache").write_text("a file, not a folder")


def manifest_names(field, value):
    return edited("student", lambda m: m.__setitem__(field, value), reseal=True)


QUANTIZED_OUTSIDE = {"runtime": "executorch", "file": "../../../../../etc/passwd", "scheme": "static",
                     "delegated_ops": [], "portable_ops": []}

CASES = {
    # 1. only ever delete what mobclf verifiably made
    "force over a web app folder with a manifest.json": (
        web_app, ["data", "prepare", "news.jsonl", "--out", "app", "--force"], "app", "not a mobclf artifact"),
    "force over an artifact holding a user's file": (
        user_file_in_dataset, ["data", "prepare", "news.jsonl", "--out", "ds", "--force"], "ds", "notes.csv"),
    "force over an artifact holding a user's folder": (
        user_folder_in_dataset, ["data", "prepare", "news.jsonl", "--out", "ds", "--force"], "ds", "extra/"),
    "force over an artifact the user edited": (
        edited_dataset, ["data", "prepare", "news.jsonl", "--out", "ds", "--force"], "ds", "modified: train.arrow"),
    "out is an existing file": (
        corpus_only, ["data", "prepare", "news.jsonl", "--out", "news.jsonl"], "news.jsonl", "not a directory"),
    "out whose parent is a file": (
        corpus_only, ["data", "prepare", "news.jsonl", "--out", "news.jsonl/ds"], "news.jsonl/ds", "folder"),
    "out inside another artifact": (
        corpus_and_dataset, ["data", "prepare", "news.jsonl", "--out", "ds/inner"], "ds/inner", "inside the artifact"),
    "out on a read-only file system": (
        corpus_only, ["data", "prepare", "news.jsonl", "--out", "/sys/mobclf-out"], "/sys/mobclf-out",
        "choose another --out"),
    "export --force over a good bundle with a failing parity check": (
        student_bundle_and_data, ["export", "--from", "student", "--data", "ds", "--out", "bundle", "--force",
                                  "--parity-texts", "20", "--max-prob-diff", "0"], "bundle", "--accept-parity-failure"),
    "eval --json into a missing folder": (
        student_and_data, ["eval", "--model", "student", "--data", "ds", "--json", "nope/m.json"], "nope/m.json",
        "does not exist"),
    "eval --json over an existing file": (
        student_and_data, ["eval", "--model", "student", "--data", "ds", "--json", "ds/train.arrow"],
        "ds/train.arrow", "already exists"),
    # 2. never read or ship a file from outside the artifact
    "quantization.file leads out of the artifact": (
        manifest_names("quantization", QUANTIZED_OUTSIDE), ["export", "--from", "student", "--data", "ds", "--out",
                                                            "b2", "--parity-texts", "5"], "student/manifest.json",
        "not a checksummed file"),
    "bundle.json named outside the bundle": (
        edited("bundle", lambda m: m.__setitem__("bundle", "../ds/manifest.json"), reseal=True),
        ["bench", "--model", "bundle", "--data", "ds", "--out", "r", "--no-tfidf"], "bundle/manifest.json",
        "not a checksummed file"),
    "tokenizer vocab_file outside the tokenizer": (
        vocab_outside, ["eval", "--model", "student", "--data", "ds"], "student/tokenizer/tokenizer.json",
        "not a file of the tokenizer folder"),
    "a file replaced by a symbolic link": (
        linked_file, ["eval", "--model", "student", "--data", "ds"], "ds", "symbolic links: test.arrow"),
    "a folder replaced by a symbolic link": (
        linked_folder, ["eval", "--model", "student", "--data", "ds"], "student", "symbolic links: tokenizer"),
    "a dangling symbolic link": (
        dangling_link, ["eval", "--model", "student", "--data", "ds"], "student", "symbolic links: stray"),
    "thresholds edited to 0.0": (
        edited("student", lambda m: m.__setitem__("thresholds", [0.0] * len(m["thresholds"]))),
        ["export", "--from", "student", "--data", "ds", "--out", "b2"], "student/manifest.json", "edited"),
    "metrics edited to 0.999": (
        edited("student", lambda m: m["metrics"]["test"].__setitem__("micro_f1", 0.999)),
        ["eval", "--model", "student", "--data", "ds"], "student/manifest.json", "edited"),
    "a manifest of an older schema": (
        edited("student", lambda m: m.__setitem__("schema_version", 1), reseal=True),
        ["eval", "--model", "student", "--data", "ds"], "student/manifest.json", "schema"),
    "manifest is a JSON list": (
        manifest_text("[]"), ["eval", "--model", "student", "--data", "ds"], "student/manifest.json", "lacks"),
    "manifest of the wrong shape": (
        manifest_text('{"kind": "student", "files": {}}'), ["eval", "--model", "student", "--data", "ds"],
        "student/manifest.json", "schema"),
    "manifest is not JSON": (
        manifest_text("{kind: student"), ["eval", "--model", "student", "--data", "ds"], "student/manifest.json",
        "unreadable manifest"),
    "a dataset given as a model": (
        student_and_data, ["eval", "--model", "ds", "--data", "ds"], "ds", "dataset artifact"),
    "weights of another model with a matching checksum": (
        swapped_weights, ["eval", "--model", "student", "--data", "ds"], "student/model.safetensors",
        "do not fit"),
    "lineage names a dataset that changed since": (
        other_dataset_at_lineage_path, ["export", "--from", "student", "--out", "b2"], "other-ds",
        "is not the dataset"),
    # 3. one line with the fix: options that cannot be right
    "loss weight nan": (
        corpus_and_dataset, ["distill", "textcnn", "--teacher", "ds", "--data", "ds", "--out", "s", "--loss", "soft_kd=nan"],
        None, "finite"),
    "negative loss weight": (
        corpus_and_dataset, ["distill", "textcnn", "--teacher", "ds", "--data", "ds", "--out", "s", "--loss", "hard_bce=-1"],
        None, "-1 must be ≥ 0"),
    "learning rate nan": (
        corpus_and_dataset, ["train-teacher", "--data", "ds", "--out", "t", "--lr", "nan"], None, "finite"),
    "temperature inf": (
        corpus_and_dataset, ["distill", "textcnn", "--teacher", "ds", "--data", "ds", "--out", "s", "--temperature", "inf"],
        None, "finite"),
    "split ratio nan": (
        corpus_only, ["data", "prepare", "news.jsonl", "--out", "d", "--split", "nan", "0.1", "0.1"], None, "finite"),
    "max-prob-diff 1e400": (
        student_and_data, ["export", "--from", "student", "--out", "b2", "--max-prob-diff", "1e400"], None,
        "not in the range"),
    "teacher-output cache below a file": (
        cache_under_a_file, ["distill", "textcnn", "--teacher", "teacher", "--data", "ds", "--out", "s", *STUDENT], "cache",
        "choose another path"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line_and_nothing_of_the_user_changes(name, made, tmp_path, monkeypatch):
    setup, args, where, says = CASES[name]
    folder = tmp_path / "user"
    folder.mkdir()
    setup(made, folder)
    monkeypatch.setenv("MOBCLF_CACHE", str(folder / "cache" / "inner"))
    Refusal(args, where=where, says=says).check(folder)


def test_a_second_writer_of_the_same_out_is_refused(made, tmp_path):
    copy(made, tmp_path, "news.jsonl")
    descriptor = os.open(tmp_path / ".ds.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # another mobclf writing ds
    try:
        Refusal(["data", "prepare", "news.jsonl", "--out", "ds"], where="ds", says="another mobclf").check(tmp_path)
    finally:
        os.close(descriptor)
    assert run("data", "prepare", tmp_path / "news.jsonl", "--out", tmp_path / "ds").exit_code == 0


def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing_half_written(made, tmp_path):
    copy(made, tmp_path, "news.jsonl")
    Refusal(["data", "prepare", "news.jsonl", "--out", "ds"], where="ds", says="file too large").check_process(
        tmp_path, max_file_bytes=8_000)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["news.jsonl"]


# ---- what must keep working ---------------------------------------------------------------------------------------

def test_lineage_paths_are_absolute_so_export_works_from_anywhere(made):
    for name in ("ds", "teacher", "student"):
        manifest = load_artifact(made / name).manifest
        assert all(Path(parent["path"]).is_absolute() for parent in manifest["lineage"]["parents"])
    assert Path(load_artifact(made / "student").manifest["distillation"]["teacher"]["path"]).is_absolute()
    assert load_artifact(made / "bundle").kind == "export"


def test_artifacts_follow_the_umask_and_force_replaces_a_verified_artifact(made, tmp_path):
    copy(made, tmp_path, "news.jsonl")
    (tmp_path / ".ds.partial-left-by-kill-9").mkdir()  # what a killed writer leaves
    previous = os.umask(0o022)
    try:
        assert run("data", "prepare", tmp_path / "news.jsonl", "--out", tmp_path / "ds").exit_code == 0
        assert run("data", "prepare", tmp_path / "news.jsonl", "--out", tmp_path / "ds", "--force").exit_code == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "ds").stat().st_mode & 0o777 == 0o755
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ds", "news.jsonl"]


def test_a_poisoned_or_truncated_teacher_cache_entry_is_recomputed_not_used(made, tmp_path, monkeypatch):
    from mobclf.distill.teacher_cache import cache_dir, teacher_outputs
    from mobclf.models import load_classifier
    from mobclf.text import load_tokenizer

    monkeypatch.setenv("MOBCLF_CACHE", str(tmp_path))
    teacher = load_artifact(made / "teacher")
    model, tokenizer = load_classifier(teacher), load_tokenizer(teacher.file("tokenizer"))
    texts = [json.loads(line)["text"] for line in (made / "news.jsonl").read_text("utf-8").splitlines()[:40]]
    clean = teacher_outputs(teacher, model, tokenizer, texts).all("logits")
    [logits] = cache_dir().glob("*/logits-*.npy")
    np.save(logits, np.full_like(np.load(logits), 7.0))
    assert torch.equal(teacher_outputs(teacher, model, tokenizer, texts).all("logits"), clean)
    [logits] = cache_dir().glob("*/logits-*.npy")
    logits.write_bytes(logits.read_bytes()[:100])
    assert torch.equal(teacher_outputs(teacher, model, tokenizer, texts).all("logits"), clean)
    [entry] = cache_dir().glob("*/entry.json")
    entry.unlink()  # as a run killed before its entry was whole leaves it: never read
    assert torch.equal(teacher_outputs(teacher, model, tokenizer, texts).all("logits"), clean)
    assert len(list(cache_dir().glob("*/entry.json"))) == 1


def tiny_fit(batch_loss, checkpoint=None, epochs=3):
    layer = torch.nn.Linear(2, 1)
    scores = iter(range(1, 100))
    return layer, fit(layer, 8, lambda index: batch_loss(layer), lambda: float(next(scores)),
                      FitConfig(epochs=epochs, batch_size=4, lr=1e-2), "tiny", checkpoint=checkpoint)


def test_a_loss_that_becomes_nan_stops_training_with_the_last_good_weights():
    calls = iter(range(100))

    def loss(layer):
        step = next(calls)
        value = layer(torch.ones(1, 2)).sum() ** 2
        return value * float("nan") if step == 3 else value  # epoch 2 (two steps per epoch), second step

    layer, result = tiny_fit(loss)
    assert result.best_epoch == 1 and "epoch 2 step 2" in result.stopped
    assert all(torch.isfinite(p).all() for p in layer.parameters())
    with pytest.raises(UserError, match="before any epoch ended well"):
        tiny_fit(lambda layer: layer(torch.ones(1, 2)).sum() * float("inf"))


def test_a_damaged_training_state_is_one_line_that_says_restart(tmp_path):
    state = tmp_path / "state.pt"
    tiny_fit(lambda layer: layer(torch.ones(1, 2)).sum() ** 2, checkpoint=state, epochs=1)
    saved = state.read_bytes()
    for damaged in (saved[: len(saved) // 2], b"not a torch file"):
        state.write_bytes(damaged)
        with pytest.raises(UserError, match="damaged.*--restart"):
            tiny_fit(lambda layer: layer(torch.ones(1, 2)).sum() ** 2, checkpoint=state)
