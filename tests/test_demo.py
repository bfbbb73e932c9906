"""`mobclf demo` is the demo recipe: the whole path on its own corpus, a rerun that redoes nothing, and a folder of
the user's at a step's output left as it was."""

from __future__ import annotations

from click.testing import CliRunner

from mobclf.artifacts import load_artifact
from mobclf.cli import main

TINY = ["--items", "400", "--pretrain-epochs", "1", "--teacher-epochs", "1", "--student-epochs", "1",
        "--min-agreement", "0.8"]
KINDS = {"dataset": "dataset", "pretrained": "pretrained", "teacher": "teacher", "student-textcnn": "student",
         "student-tinybert": "student", "textcnn-int8": "quantized", "tinybert-int8": "quantized",
         "android": "export", "onnx": "export", "report": "report"}


def test_the_demo_recipe_runs_end_to_end_then_redoes_nothing(demo_run):
    out, done = demo_run  # `mobclf run export_recipes/demo.yaml`, the README's main job
    made = {name: load_artifact(out / name) for name in KINDS}
    assert {name: artifact.kind for name, artifact in made.items()} == KINDS
    assert made["teacher"].manifest["init"] == str(out / "pretrained")
    assert made["student-tinybert"].manifest["architecture"]["name"] == "tinybert"
    assert set(made["student-textcnn"].manifest["distillation"]["plan"]["losses"]) == {
        "soft_kd", "hard_bce", "hint_mse", "attention_transfer"}
    assert "| teacher |" in done.stderr  # the bench report

    again = CliRunner().invoke(main, ["demo", "--out", str(out)])  # the same recipe at its defaults
    assert again.exit_code == 0 and "12 up to date" in again.output
    assert {name: load_artifact(out / name).sha256 for name in KINDS} == {
        name: artifact.sha256 for name, artifact in made.items()}


def test_the_demo_options_set_the_recipe_variables(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("mobclf.recipes.run_recipe", lambda recipe, **kwargs: seen.update(
        kwargs, recipe_text=recipe.read_text("utf-8")))
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), *TINY])
    assert result.exit_code == 0, result.output
    assert seen["work"] == tmp_path / "demo" and seen["variables"] == {
        "DEMO_ITEMS": 400, "DEMO_PRETRAIN_EPOCHS": 1, "DEMO_TEACHER_EPOCHS": 1, "DEMO_STUDENT_EPOCHS": 1,
        "DEMO_SEED": 42, "DEMO_MIN_AGREEMENT": 0.8}
    assert "epochs: \"${DEMO_TEACHER_EPOCHS:-6}\"" in seen["recipe_text"]  # the shipped recipe reads them


def test_a_folder_of_the_users_at_a_demo_step_is_never_replaced(tmp_path):
    out = tmp_path / "demo"
    (out / "dataset").mkdir(parents=True)
    (out / "dataset" / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--out", str(out), *TINY])
    assert result.exit_code == 2 and "dataset" in result.output and "Traceback" not in result.output
    assert [p.name for p in (out / "dataset").iterdir()] == ["notes.txt"]
    assert (out / "dataset" / "notes.txt").read_text() == "keep me"
