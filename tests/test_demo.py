"""`mobclf demo` runs the whole path on its own corpus and never takes over a directory it did not make."""

from __future__ import annotations

from click.testing import CliRunner

from mobclf.artifacts import load_artifact
from mobclf.cli import main


def test_demo_runs_end_to_end_and_refuses_foreign_directories(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--items", "400", "--pretrain-epochs", "1", "--teacher-epochs", "1",
            "--student-epochs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name, kind in (("dataset", "dataset"), ("pretrained", "pretrained"), ("teacher", "teacher"),
                       ("student-textcnn", "student"), ("student-tinybert", "student")):
        assert load_artifact(out / name).kind == kind
    assert load_artifact(out / "teacher").manifest["init"] == str(out / "pretrained")
    assert load_artifact(out / "student-tinybert").manifest["architecture"]["name"] == "tinybert"
    student = load_artifact(out / "student-textcnn").manifest
    assert set(student["distillation"]["plan"]["losses"]) == {"soft_kd", "hard_bce", "hint_mse", "attention_transfer"}

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--force" in again.output

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused = CliRunner().invoke(main, ["demo", "--out", str(foreign)])
    assert refused.exit_code == 2 and "not made by `mobclf demo`" in refused.output
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
