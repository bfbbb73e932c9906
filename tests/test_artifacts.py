"""The artifact contract: atomic writes, checksums verified on load, nothing of the user's overwritten."""

from __future__ import annotations

import json

import pytest

from mobclf.artifacts import MANIFEST, lineage, load_artifact, write_artifact
from mobclf.errors import UserError


def make(out, force=False, text="weights"):
    with write_artifact(out, kind="teacher", force=force) as art:
        (art.dir / "model.safetensors").write_text(text)
        (art.dir / "tokenizer").mkdir()
        (art.dir / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
        art.manifest["labels"] = ["a", "b"]
        art.manifest["lineage"] = lineage([], seed=1)
    return load_artifact(out)


def test_round_trip_lists_every_file_with_its_checksum(tmp_path):
    artifact = make(tmp_path / "t")
    assert artifact.kind == "teacher" and artifact.labels == ["a", "b"]
    assert set(artifact.manifest["files"]) == {"model.safetensors", "tokenizer/vocab.txt"}
    assert artifact.manifest["lineage"]["seed"] == 1 and "torch" in artifact.manifest["lineage"]["versions"]
    assert len(artifact.sha256) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no temporary directory left behind


def test_tampered_file_is_refused(tmp_path):
    make(tmp_path / "t")
    (tmp_path / "t" / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(UserError, match="modified: tokenizer/vocab.txt"):
        load_artifact(tmp_path / "t")


def test_missing_and_unexpected_files_are_refused(tmp_path):
    make(tmp_path / "t")
    (tmp_path / "t" / "model.safetensors").unlink()
    (tmp_path / "t" / "stray.bin").write_text("x")
    with pytest.raises(UserError, match="missing: model.safetensors.*unexpected: stray.bin"):
        load_artifact(tmp_path / "t")


def test_half_written_directory_without_manifest_is_refused(tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / "model.safetensors").write_text("partial")
    with pytest.raises(UserError, match="interrupted"):
        load_artifact(half)


def test_crash_while_writing_leaves_nothing_and_keeps_the_old_artifact(tmp_path):
    make(tmp_path / "t", text="old")
    with pytest.raises(RuntimeError):
        with write_artifact(tmp_path / "t", kind="teacher", force=True) as art:
            (art.dir / "model.safetensors").write_text("new")
            raise RuntimeError("killed")
    assert (tmp_path / "t" / "model.safetensors").read_text() == "old"
    assert load_artifact(tmp_path / "t").kind == "teacher"
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_existing_output_needs_force_and_non_artifacts_are_never_replaced(tmp_path):
    make(tmp_path / "t")
    with pytest.raises(UserError, match="--force"):
        make(tmp_path / "t")
    assert make(tmp_path / "t", force=True, text="new").file("model.safetensors").read_text() == "new"
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("precious")
    with pytest.raises(UserError, match="not a mobclf artifact"):
        make(user_dir, force=True)
    assert (user_dir / "notes.txt").read_text() == "precious"


def test_wrong_kind_and_broken_manifest_are_refused(tmp_path):
    make(tmp_path / "t")
    with pytest.raises(UserError, match="is a teacher artifact, but a dataset artifact is needed"):
        load_artifact(tmp_path / "t", kind="dataset")
    (tmp_path / "t" / MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="unreadable manifest"):
        load_artifact(tmp_path / "t")
    (tmp_path / "t" / MANIFEST).write_text(json.dumps({"kind": "teacher"}))
    with pytest.raises(UserError, match="lacks"):
        load_artifact(tmp_path / "t")
