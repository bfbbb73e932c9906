"""`mobclf run RECIPE.yaml`: a tiny recipe runs end to end, skips what is up to date, resumes after an interruption
without redoing finished steps, re-runs a changed step and what follows it, and refuses bad recipes in one line."""

from __future__ import annotations

import errno
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import run

from mobclf.artifacts import load_artifact, sha256_file
from mobclf.errors import UserError
from mobclf.recipes import run_recipe

RECIPES = Path(__file__).resolve().parent.parent / "export_recipes"

TINY = """\
name: tiny
work: work
steps:
  - {id: corpus, kind: demo-corpus, out: corpus/news.jsonl, options: {items: 600, seed: 11}}
  - {id: dataset, kind: data, inputs: {input: corpus}}
  - id: teacher
    kind: teacher
    inputs: {data: dataset}
    options: {layers: 1, hidden: 48, heads: 4, max-length: 40, batch-size: 32, lr: 2.0e-3, epochs: 3}
  - id: student
    kind: distill
    inputs: {teacher: teacher, data: dataset}
    options: {student: textcnn, loss: {soft_kd: 1, hard_bce: 1}, embedding-dim: 32, filters: 16,
              kernel-sizes: [2, 3], epochs: STUDENT_EPOCHS, lr: 3.0e-3}
  - id: android
    kind: export
    inputs: {from: student}
    options: {target: android, parity-texts: 20}
"""
STEPS = ["corpus", "dataset", "teacher", "student", "android"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def created(work: Path, steps=STEPS) -> dict[str, str]:
    """When each step's output was written (its manifest's mtime; the corpus file's own), after checking it."""
    stamps = {name: (load_artifact(work / name), (work / name / "manifest.json").stat().st_mtime_ns)[1]
              for name in steps[1:]}
    return {"corpus": (work / "corpus" / "news.jsonl").stat().st_mtime_ns, **stamps}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny recipe, run once."""
    root = tmp_path_factory.mktemp("recipe")
    recipe = write(root / "tiny.yaml", TINY.replace("STUDENT_EPOCHS", "2"))
    assert run_recipe(recipe) == dict.fromkeys(STEPS, "ran")
    (root / "payload.json").write_text(json.dumps(payload(root / "work")), encoding="utf-8")  # before tests change it
    return recipe


def payload(work: Path) -> dict:
    """What the tiny recipe made, but for when: the corpus's hash and every artifact's checksummed files."""
    return {"corpus": sha256_file(work / "corpus" / "news.jsonl"),
            **{name: load_artifact(work / name).manifest["files"] for name in STEPS[1:]}}


def test_a_recipe_runs_end_to_end_and_then_skips_every_step(tiny, capsys):
    work = tiny.parent / "work"
    bundle = load_artifact(work / "android", kind="export")
    assert (work / "android" / "model.pte").stat().st_size > 0
    assert bundle.manifest["lineage"]["parents"][0]["sha256"] == load_artifact(work / "student").sha256
    # the artifact's lineage records the command that makes it by hand
    assert load_artifact(work / "teacher").manifest["lineage"]["command"].startswith(
        f"mobclf train-teacher --data {work / 'dataset'} --layers 1")
    before = created(work)

    assert run_recipe(tiny) == dict.fromkeys(STEPS, "up to date")
    assert created(work) == before
    assert "✓ teacher (up to date)" in capsys.readouterr().err

    result = run("run", tiny, "--dry-run")  # the CLI: nothing to do
    assert result.exit_code == 0 and "would run" not in result.output


def test_a_changed_step_reruns_with_what_follows_and_an_interrupted_run_resumes(tiny, monkeypatch):
    work = tiny.parent / "work"
    before = created(work)
    changed = write(tiny.parent / "tiny-changed.yaml", TINY.replace("STUDENT_EPOCHS", "1"))
    assert run_recipe(changed, work=work, dry_run=True) == {
        "corpus": "up to date", "dataset": "up to date", "teacher": "up to date", "student": "would run",
        "android": "would run"}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    old_bundle = load_artifact(work / "android").sha256
    monkeypatch.setattr("mobclf.export.bundle.run", interrupted)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C during the export, after the new student was written
        run_recipe(changed, work=work)
    monkeypatch.undo()
    after_interruption = created(work, STEPS[:4])
    assert after_interruption["student"] != before["student"]
    # the outdated bundle is still there, whole: a step's old output is replaced only by a complete new one
    assert load_artifact(work / "android").sha256 == old_bundle

    assert run_recipe(changed, work=work) == {"corpus": "up to date", "dataset": "up to date",
                                              "teacher": "up to date", "student": "up to date", "android": "ran"}
    assert created(work, STEPS[:4]) == after_interruption
    assert load_artifact(work / "android").manifest["lineage"]["parents"][0]["sha256"] == load_artifact(
        work / "student").sha256

    # `--only android --force` interrupted: the bundle it was replacing is still there
    bundle = load_artifact(work / "android").sha256
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr("mobclf.export.bundle.run", interrupted)
        run_recipe(changed, work=work, only="android", force=True)
    assert load_artifact(work / "android").sha256 == bundle
    assert not list(work.glob(".*partial-*"))

    # --only STEP runs that step and what it needs; --force redoes it even though it is up to date
    assert run_recipe(changed, work=work, only="dataset", force=True) == {"corpus": "up to date", "dataset": "ran"}
    assert run_recipe(changed, work=work, dry_run=True) == {
        "corpus": "up to date", "dataset": "up to date", "teacher": "would run", "student": "would run",
        "android": "would run"}


CHEAP = """\
name: cheap
work: work
steps:
  - {id: corpus, kind: demo-corpus, out: corpus/news.jsonl, options: {items: 300, seed: 3}}
  - {id: dataset, kind: data, inputs: {input: corpus}, options: {split: [0.8, 0.1, 0.1]}}
"""


def test_an_output_written_just_before_an_interruption_is_not_redone(tmp_path, monkeypatch):
    """Ctrl-C after a stage wrote its output but before the run recorded it: the next run keeps that output."""
    recipe = write(tmp_path / "cheap.yaml", CHEAP)
    from mobclf import recipes

    finish = recipes._State.finish

    def interrupted(self, step, fingerprint, sha256):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipes._State, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe)
    monkeypatch.setattr(recipes._State, "finish", finish)
    corpus = tmp_path / "work" / "corpus" / "news.jsonl"
    stamp = corpus.stat().st_mtime_ns
    assert run_recipe(recipe) == {"corpus": "up to date", "dataset": "ran"}
    assert corpus.stat().st_mtime_ns == stamp


def test_a_setting_added_to_a_stage_later_leaves_earlier_outputs_up_to_date(tmp_path, monkeypatch):
    """Fingerprints leave out settings at their defaults: a new mobclf with one more data setting (at its default)
    finds what an older one made up to date, also an output made when fingerprints held the whole config."""
    import dataclasses

    from mobclf import recipes
    from mobclf.protocol import as_json, setting

    recipe = write(tmp_path / "cheap.yaml", CHEAP)
    with monkeypatch.context() as before_defaults:  # the dataset made when fingerprints held every setting
        before_defaults.setattr(recipes, "_differing", lambda config, default: as_json(config))
        assert run_recipe(recipe) == {"corpus": "ran", "dataset": "ran"}
    made = created(tmp_path / "work", ["corpus", "dataset"])
    data = recipes.KINDS["data"]
    newer = dataclasses.make_dataclass("NewerDataConfig", [("sample", float, setting(1.0, "A new setting."))],
                                       bases=(data.config,), frozen=True)
    monkeypatch.setitem(recipes.KINDS, "data", dataclasses.replace(data, config=newer))
    assert run_recipe(recipe) == {"corpus": "up to date", "dataset": "up to date"}
    assert created(tmp_path / "work", ["corpus", "dataset"]) == made
    # the state file now names the step by today's fingerprint; the output is what the older run made
    assert run_recipe(recipe) == {"corpus": "up to date", "dataset": "up to date"}

    changed = write(tmp_path / "changed.yaml", CHEAP.replace("split: [0.8, 0.1, 0.1]", "split: [0.8, 0.1, 0.1], "
                                                                                         "sample: 0.5"))
    assert run_recipe(changed, work=tmp_path / "work", dry_run=True) == {"corpus": "up to date",
                                                                          "dataset": "would run"}


def test_a_run_killed_twice_ends_with_the_artifacts_of_an_uninterrupted_run(tiny, tmp_path):
    """kill -9 during the teacher's training, then during the export: the third run finishes the job, and what it
    made is what a run that was never interrupted made (every checksummed file; only the timestamps differ)."""
    recipe, work = write(tmp_path / "tiny.yaml", TINY.replace("STUDENT_EPOCHS", "2")), tmp_path / "work"
    for stage, ready in (("teacher", "teacher: "), ("android", ".android.partial-")):
        process = subprocess.Popen([str(Path(sys.executable).parent / "mobclf"), "run", str(recipe)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
        seen, deadline = "", time.monotonic() + 600

        def inside_the_stage() -> bool:  # its log line, or its hidden partial output, shows
            return f"▶ {stage}:" in seen and (ready in seen.split(f"▶ {stage}:")[-1] or any(work.glob(ready + "*")))

        while not inside_the_stage():
            assert process.poll() is None and time.monotonic() < deadline, f"{stage} never started: {seen}"
            try:
                seen += lines.get(timeout=0.02)
            except queue.Empty:
                pass
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    assert not (work / "android").exists()
    assert run_recipe(recipe) == {"corpus": "up to date", "dataset": "up to date", "teacher": "up to date",
                                  "student": "up to date", "android": "ran"}
    assert payload(work) == json.loads((tiny.parent / "payload.json").read_text(encoding="utf-8"))
    assert not list(work.rglob("*.partial-*"))


def test_a_lost_or_broken_state_file_is_rebuilt_from_lineage(tmp_path, capsys):
    recipe = write(tmp_path / "cheap.yaml", CHEAP)
    state = tmp_path / "work" / ".recipe-state.json"
    assert run_recipe(recipe) == {"corpus": "ran", "dataset": "ran"}
    state.unlink()
    assert run_recipe(recipe) == {"corpus": "up to date", "dataset": "up to date"}
    assert set(json.loads(state.read_text(encoding="utf-8"))["done"]) == {
        str(tmp_path / "work" / "corpus" / "news.jsonl"), str(tmp_path / "work" / "dataset")}
    for broken in ("[]", '{"done": []}', '{"done": {"x": 1}}', "not json", '"done"'):
        state.write_text(broken, encoding="utf-8")
        capsys.readouterr()
        assert run_recipe(recipe) == {"corpus": "up to date", "dataset": "up to date"}
        warnings = [line for line in capsys.readouterr().err.splitlines() if ".recipe-state.json" in line]
        assert len(warnings) == 1 and "ignored" in warnings[0]
    # without a state file, the recipe still owns what its steps made: a changed step replaces its old output
    state.unlink()
    changed = write(tmp_path / "cheap.yaml", CHEAP.replace("split: [0.8, 0.1, 0.1]", "split: [0.7, 0.2, 0.1]"))
    assert run_recipe(changed) == {"corpus": "up to date", "dataset": "ran"}


def test_a_full_disk_while_writing_the_corpus_leaves_no_cut_corpus(tmp_path, monkeypatch):
    recipe = write(tmp_path / "cheap.yaml", CHEAP)
    corpus = tmp_path / "work" / "corpus" / "news.jsonl"

    flush = os.fsync

    def full_disk(descriptor):  # the corpus is written; the disk fills as it is flushed to it
        if "news.jsonl" in os.readlink(f"/proc/self/fd/{descriptor}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        flush(descriptor)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full_disk)
        result = run("run", recipe)
    assert result.exit_code == 2 and "no space left" in result.output and "Traceback" not in result.output
    assert not corpus.exists() and not list(corpus.parent.glob(".*partial*"))
    assert run_recipe(recipe) == {"corpus": "ran", "dataset": "ran"}


def test_a_dry_run_writes_nothing(tmp_path):
    recipe = write(tmp_path / "cheap.yaml", CHEAP)
    assert run_recipe(recipe, dry_run=True) == {"corpus": "would run", "dataset": "would run"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cheap.yaml"]


def test_a_dry_run_prints_every_steps_command_up_to_date_or_not(tmp_path, capsys):
    recipe = write(tmp_path / "cheap.yaml", CHEAP)
    work = tmp_path / "work"
    commands = {"corpus": f"demo-corpus --items 300 --seed 3 --out {work / 'corpus' / 'news.jsonl'}",
                "dataset": f"mobclf data prepare {work / 'corpus' / 'news.jsonl'} --out {work / 'dataset'}"}
    for statuses, mark in ((dict.fromkeys(commands, "would run"), "• {} would run: "),
                           (dict.fromkeys(commands, "up to date"), "✓ {} (up to date): ")):
        if mark.startswith("✓"):
            assert run_recipe(recipe) == dict.fromkeys(commands, "ran")
            capsys.readouterr()
        assert run_recipe(recipe, dry_run=True) == statuses
        lines = capsys.readouterr().err.splitlines()
        for step, command in commands.items():
            assert any(line.startswith(mark.format(step)) and line.endswith(command) for line in lines), (step, lines)


def test_interrupted_pretraining_resumes_from_its_saved_state(tmp_path, monkeypatch):
    recipe = write(tmp_path / "pretrain.yaml", CHEAP + """\
  - id: pretrained
    kind: pretrain
    inputs: {data: dataset}
    options: {max-length: 32, layers: 1, hidden: 32, heads: 2, val-fraction: 0.1, epochs: 2, lr: 3.0e-3,
              save-every: 1, device: cpu}
""")
    calls, step = [], torch.optim.AdamW.step

    def interrupted_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(torch.optim.AdamW, "step", interrupted_step)
        run_recipe(recipe)
    assert not (tmp_path / "work" / "pretrained").exists()
    assert run_recipe(recipe) == {"corpus": "up to date", "dataset": "up to date", "pretrained": "ran"}
    assert load_artifact(tmp_path / "work" / "pretrained").manifest["training"]["resumed_from"] == 4


def test_what_the_recipe_did_not_make_is_never_replaced_not_even_with_force(tmp_path):
    recipe = write(tmp_path / "cheap.yaml", CHEAP)
    mine = tmp_path / "work" / "corpus" / "news.jsonl"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own file\n", encoding="utf-8")
    for force in ([], ["--force"]):
        result = run("run", recipe, *force)
        assert result.exit_code == 2 and "cheap.yaml:4: step 'corpus'" in result.output
        assert "is not an output this recipe made" in result.output
        assert mine.read_text(encoding="utf-8") == "my own file\n"
    mine.unlink()
    assert run_recipe(recipe) == {"corpus": "ran", "dataset": "ran"}
    # a corpus the recipe wrote, then edited by hand, is the user's now
    with mine.open("a", encoding="utf-8") as handle:
        handle.write('{"text": "my own headline", "labels": ["sports"]}\n')
    edited = mine.read_bytes()
    with pytest.raises(UserError, match="is not an output this recipe made"):
        run_recipe(recipe, force=True)
    assert mine.read_bytes() == edited


def test_recipe_options_become_the_commands_own_options(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MOBCLF_TEST_DATA", str(tmp_path / "data"))
    recipe = write(tmp_path / "options.yaml", """\
name: options
work: ${MOBCLF_TEST_WORK:-runs/here}
steps:
  - id: dataset
    kind: data
    options: {train: '${MOBCLF_TEST_DATA}/news.csv', label_sep: '|', split: [0.7, 0.2, 0.1]}
  - {id: teacher, kind: teacher, inputs: {data: dataset}}
  - id: pretrained
    kind: pretrain
    inputs: {tokenizer-dir: teacher/tokenizer}
    options: {corpus: [texts/a.txt, /abs/b.txt], whole-word: false, max-length: null}
  - id: pruned
    kind: prune
    inputs: {from: teacher, data: dataset}
    options: {global: true, no-prune-vocab: true, loss: {soft_kd: 1}, recovery-epochs: 0}
""")
    statuses = run_recipe(recipe, dry_run=True)
    assert list(statuses) == ["dataset", "teacher", "pretrained", "pruned"]
    plan, work = capsys.readouterr().err, tmp_path / "runs" / "here"
    assert (f"mobclf data prepare --train {tmp_path}/data/news.csv --label-sep '|' --split 0.7 0.2 0.1 "
            f"--out {work}/dataset") in plan
    assert (f"mobclf pretrain --corpus {tmp_path}/texts/a.txt --corpus /abs/b.txt --tokenizer-dir "
            f"{work}/teacher/tokenizer --no-whole-word --out {work}/pretrained") in plan
    assert "--global --no-prune-vocab --loss soft_kd=1.0 --recovery-epochs 0 --out" in plan


@pytest.mark.parametrize("recipe, message", [
    ("name: x\nwork: w\nsteps:\n  - {id: a, kind: train, out: a}\n",
     "bad.yaml:4: step 'a': unknown kind 'train'"),
    ("name: x\nwork: w\nsteps:\n  - id: c\n    kind: demo-corpus\n    options: {itmes: 3}\n",
     "bad.yaml:6: step 'c': unknown option 'itmes' for a demo-corpus step (did you mean 'items'?)"),
    ("name: x\nwork: w\nsteps:\n  - {id: d, kind: data, inputs: {input: corpus}}\n",
     "bad.yaml:4: step 'd': input: 'corpus' is not an earlier step's id"),
    ("name: x\nwork: w\nsteps:\n  - {id: t, kind: teacher, options: {layers: 2}}\n",
     "bad.yaml:4: step 't': mobclf train-teacher needs data"),
    ("name: x\nwork: w\nsteps:\n  - {id: c, kind: demo-corpus, options: {out: c.jsonl}}\n",
     "step 'c': 'out' is not a recipe option (give the step's `out` instead)"),
    ("name: x\nwork: w\nsteps:\n  - {id: c, kind: demo-corpus, options: {items: many}}\n",
     "step 'c': items: expected an integer, got 'many'"),
    ("name: x\nwork: w\nsteps:\n  - {id: c, kind: demo-corpus, options: {items: 3}}\n"
     "  - {id: c, kind: demo-corpus, options: {items: 4}}\n", "bad.yaml:5: two steps are called 'c'"),
    ("name: x\nwork: ${MOBCLF_TEST_UNSET_VARIABLE}\nsteps: []\n", "${MOBCLF_TEST_UNSET_VARIABLE} is not set"),
    ("name: x\nwork: w\nstep: []\n", "unknown key 'step' in recipe (did you mean 'steps'?)"),
    ("name: x\nwork: w\nsteps:\n  - {id: c, kind: demo-corpus\n", "bad.yaml:5: not a valid YAML recipe"),
    ("just some text\n", "bad.yaml: a recipe is a mapping"),
])
def test_bad_recipes_are_one_line_errors_naming_the_file(tmp_path, recipe, message):
    path = write(tmp_path / "bad.yaml", recipe)
    with pytest.raises(UserError) as caught:
        run_recipe(path, dry_run=True)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    result = run("run", path, "--dry-run")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_the_distillation_losses_are_checked_when_the_recipe_loads(tmp_path):
    path = write(tmp_path / "bad.yaml", "name: x\nwork: w\nsteps:\n  - id: s\n    kind: distill\n"
                                        "    options: {teacher: t, data: d, loss: {soft_kd: x}}\n")
    with pytest.raises(UserError, match=r"bad.yaml:6: step 's': loss: expected a number, got 'x'"):
        run_recipe(path, dry_run=True)


@pytest.mark.parametrize("name", sorted(path.name for path in RECIPES.glob("*.yaml")))
def test_shipped_recipes_validate(name, tmp_path):
    statuses = run_recipe(RECIPES / name, work=tmp_path, dry_run=True)
    assert statuses and set(statuses.values()) == {"would run"}


def test_the_shipped_recipes_are_the_promised_ones():
    assert {path.name for path in RECIPES.glob("*.yaml")} >= {
        "demo.yaml", "thucnews-textcnn-android.yaml", "thucnews-tinybert-android.yaml", "reuters-multilabel.yaml"}


def test_a_recipe_step_and_its_command_make_the_same_artifact(tmp_path):
    """A step builds the config its command builds and runs the same stage: the manifests differ only in when they
    were made, where they were written and which recipe step made them."""
    from mobclf.data.demo_corpus import generate_demo_corpus

    generate_demo_corpus(tmp_path / "news.jsonl", n_items=300, seed=3)
    recipe = write(tmp_path / "one.yaml", "name: one\nwork: work\nsteps:\n  - id: dataset\n    kind: data\n"
                                          "    options: {train: news.jsonl, seed: 7, split: [0.7, 0.15, 0.15]}\n")
    assert run_recipe(recipe) == {"dataset": "ran"}
    assert run("data", "prepare", "--train", tmp_path / "news.jsonl", "--seed", "7", "--split", "0.7", "0.15", "0.15",
               "--out", tmp_path / "by-hand").exit_code == 0
    by_recipe, by_hand = (load_artifact(path).manifest for path in (tmp_path / "work" / "dataset", tmp_path / "by-hand"))
    assert by_recipe["lineage"].pop("recipe_step")["step"] == "dataset" and "recipe_step" not in by_hand["lineage"]
    assert by_recipe["lineage"]["stage"] == by_hand["lineage"]["stage"] == {
        "name": "data prepare", "config": {**by_hand["lineage"]["stage"]["config"], "seed": 7,
                                           "split": [0.7, 0.15, 0.15]}}
    commands = [manifest["lineage"].pop("command") for manifest in (by_recipe, by_hand)]
    assert commands[0].replace(str(tmp_path / "work" / "dataset"), "OUT") == commands[1].replace(
        str(tmp_path / "by-hand"), "OUT")
    for manifest in (by_recipe, by_hand):
        for key in ("created", "manifest_sha256"):
            manifest.pop(key)
    assert by_recipe == by_hand


def test_recipes_build_stage_configs_and_never_go_through_click():
    source = Path(run_recipe.__code__.co_filename).read_text(encoding="utf-8")
    assert not re.search(r"^\s*(import click|from click|from mobclf(\.cli| import cli))", source, re.MULTILINE)
    loaded = subprocess.run([sys.executable, "-c", "import sys, mobclf.recipes; print(sorted(m for m in sys.modules "
                             "if m.startswith('click') or m == 'mobclf.cli'))"], capture_output=True, text=True)
    assert "mobclf.cli" not in loaded.stdout and "sys.argv" not in source
