"""Training under torchrun: two gloo processes on CPU give the weights and metrics of one process with the same
global batch (dropout off, so both runs draw nothing at random), for the teacher, both students (every intermediate
loss) and pruning's recovery; rank 0 alone writes and speaks; ranks that disagree are caught."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from mobclf.artifacts import load_artifact
from mobclf.cli import main
from mobclf.data.demo_corpus import generate_demo_corpus
from test_recipes import TINY

BIN = Path(sys.executable).parent
TEACHER = ["--layers", "1", "--hidden", "48", "--heads", "4", "--max-length", "40", "--batch-size", "32", "--lr",
           "2e-3", "--epochs", "3", "--dropout", "0"]
STEPS = {
    "teacher": ["train-teacher", "--data", "data", *TEACHER],
    "textcnn": ["distill", "textcnn", "--teacher", "teacher", "--data", "data", "--loss", "soft_kd=1", "--loss",
                "hard_bce=1", "--loss", "hint_mse=1", "--loss", "attention_transfer=1", "--intermediate-epochs", "1",
                "--epochs", "3", "--embedding-dim", "32", "--filters", "16", "--dropout", "0", "--batch-size", "32"],
    "tinybert": ["distill", "tinybert", "--teacher", "teacher", "--data", "data", "--loss", "soft_kd=1", "--loss",
                 "hard_bce=1", "--loss", "embedding_mse=1", "--loss", "hidden_mse=1", "--loss", "attention_mse=1",
                 "--intermediate-epochs", "1", "--epochs", "3", "--layers", "1", "--hidden", "32", "--heads", "2",
                 "--intermediate", "64", "--dropout", "0", "--batch-size", "32"],
    "pruned": ["prune", "--from", "textcnn", "--data", "data", "--ratio", "0.5", "--steps", "1",
               "--recovery-epochs", "2"],
}


def mobclf(*args, cwd: Path, processes: int = 1) -> subprocess.CompletedProcess:
    """The console script in a fresh process, or under torchrun with ``processes`` gloo workers."""
    launcher = [str(BIN / "torchrun"), "--nproc_per_node", str(processes)] if processes > 1 else []
    done = subprocess.run([*launcher, str(BIN / "mobclf"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every step of ``STEPS`` run by one process (``one/``) and by two (``two/``), each from the same inputs."""
    root = tmp_path_factory.mktemp("ddp")
    generate_demo_corpus(root / "news.jsonl", n_items=600, seed=11)
    for name in ("one", "two"):
        (root / name).mkdir()
        mobclf("data", "prepare", root / "news.jsonl", "--out", "data", cwd=root / name)
    outputs = {}
    for step, args in STEPS.items():
        for name, processes in (("one", 1), ("two", 2)):
            outputs[step, name] = mobclf(*args, "--out", step, cwd=root / name, processes=processes)
    return root, outputs


@pytest.mark.parametrize("step", list(STEPS))
def test_two_processes_train_what_one_process_trains(runs, step):
    root, _ = runs
    one, two = (load_artifact(root / name / step).manifest for name in ("one", "two"))
    assert one["training"]["processes"] == 1 and two["training"]["processes"] == 2  # and their weights agreed
    # the same global batches: the same scores, losses equal but for the order of floating-point sums
    assert two["metrics"]["val"] == one["metrics"]["val"] and two["metrics"]["test"] == one["metrics"]["test"]
    assert two["thresholds"] == one["thresholds"]
    losses = [[epoch["train_loss"] for epoch in manifest["training"]["history"]] for manifest in (one, two)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    # weights: equal to ~1e-7 on average; single entries whose gradient is ~0 (rare tokens' embedding rows, BERT's
    # key bias) move by up to ~1e-3, as Adam scales their rounding noise up to a full step
    weights = [load_file(root / name / step / "model.safetensors") for name in ("one", "two")]
    assert weights[0].keys() == weights[1].keys()
    for key, ours in weights[0].items():
        difference = (ours - weights[1][key]).abs()
        assert difference.mean().item() < 1e-5 and difference.max().item() < 1e-2, key


def test_rank_zero_alone_writes_and_reports(runs):
    root, outputs = runs
    for step in STEPS:
        done = outputs[step, "two"]
        assert done.stdout.count("artifact written to") == 1, done.stdout
        assert "Traceback" not in done.stderr and "[rank1]" not in done.stderr
    assert sorted(p.name for p in (root / "two").iterdir()) == sorted(["data", *STEPS])
    assert not list((root / "two").glob(".*"))  # no partial or lock left behind


def test_ranks_with_different_weights_are_caught(tmp_path):
    """The end-of-training check itself: rank 1 changes one weight, and every rank sees that they disagree."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import torch\n"
        "from mobclf.train import distributed\n"
        "distributed.setup('cpu')\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Linear(3, 2)\n"
        "same = distributed.parameters_agree(model)\n"
        "if distributed.rank() == 1:\n"
        "    model.weight.data[0, 0] += 1e-7\n"
        "different = distributed.parameters_agree(model)\n"
        f"open(f'{tmp_path}/rank{{distributed.rank()}}.txt', 'w').write(f'{{same}} {{different}}')\n", "utf-8")
    done = subprocess.run([str(BIN / "torchrun"), "--nproc_per_node", "2", str(probe)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(tmp_path / f"rank{rank}.txt").read_text() for rank in (0, 1)] == ["True False", "True False"]



def workers(marker: str) -> dict[int, int]:
    """{rank: pid} of the torchrun workers whose command line names ``marker``."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ranks = [item[5:] for item in environment if item.startswith(b"RANK=")]
        if marker.encode() in command and ranks:
            found[int(ranks[0])] = int(pid)
    return found


def start_and_kill(args, cwd: Path, kill) -> None:
    """Start ``args`` on two processes, wait for the first saved training state, then ``kill(launcher)``."""
    launcher = subprocess.Popen([str(BIN / "torchrun"), "--nproc_per_node", "2", str(BIN / "mobclf"), *args],
                                cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    state = cwd / ".killed.train-state" / "teacher.pt"
    deadline = time.monotonic() + 300
    while not state.exists():
        assert launcher.poll() is None and time.monotonic() < deadline, "the run ended before it saved a state"
        time.sleep(0.05)
    kill(launcher)
    assert launcher.wait(timeout=120) != 0
    while workers("killed"):  # gone with the launcher's process group, or stopped by torchrun
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_run_killed_twice_resumes_to_the_uninterrupted_result(runs):
    """First one rank dies (kill -9 of rank 1: torchrun stops the other), then the launcher and its workers are
    killed (kill -9 of the process group); the same command run a third time resumes and ends as a run that was
    never interrupted."""
    root, _ = runs
    work = root / "resume"
    work.mkdir()
    args = ["train-teacher", "--data", root / "two" / "data", *TEACHER, "--epochs", "12", "--patience", "100",
            "--save-every", "3"]  # the later --epochs wins
    mobclf(*args, "--out", "uninterrupted", cwd=work, processes=2)

    start_and_kill([*args, "--out", "killed"], work, lambda launcher: os.kill(workers("killed")[1], signal.SIGKILL))
    start_and_kill([*args, "--out", "killed"], work, lambda launcher: os.killpg(launcher.pid, signal.SIGKILL))
    assert not (work / "killed").exists()
    mobclf(*args, "--out", "killed", cwd=work, processes=2)

    killed, uninterrupted = (load_artifact(work / name).manifest for name in ("killed", "uninterrupted"))
    assert killed["training"]["resumed_from"] > 0 and uninterrupted["training"]["resumed_from"] is None
    assert killed["metrics"] == uninterrupted["metrics"] and killed["thresholds"] == uninterrupted["thresholds"]
    assert [epoch["train_loss"] for epoch in killed["training"]["history"]] == pytest.approx(
        [epoch["train_loss"] for epoch in uninterrupted["training"]["history"]], rel=1e-6)
    assert not (work / ".killed.train-state").exists()


def test_gradient_accumulation_and_bf16_train_the_same_teacher(runs):
    """--accumulate 3 makes the update of the whole batch from three pieces (the same weights but for rounding);
    --precision bf16 autocasts the forward passes and still learns (bf16 rounds: close, not equal)."""
    root, _ = runs
    work = root / "accumulate"
    work.mkdir()
    for name, extra in (("whole", []), ("pieces", ["--accumulate", "3"]), ("bf16", ["--precision", "bf16"])):
        mobclf("train-teacher", "--data", root / "one" / "data", *TEACHER, *extra, "--out", name, cwd=work)
    whole, pieces, bf16 = (load_artifact(work / name).manifest for name in ("whole", "pieces", "bf16"))
    assert pieces["metrics"] == whole["metrics"] and pieces["training"]["config"]["accumulate"] == 3
    assert [e["train_loss"] for e in pieces["training"]["history"]] == pytest.approx(
        [e["train_loss"] for e in whole["training"]["history"]], rel=1e-5)
    assert [e["train_loss"] for e in bf16["training"]["history"]] == pytest.approx(
        [e["train_loss"] for e in whole["training"]["history"]], rel=2e-2)
    assert abs(bf16["metrics"]["test"]["micro_f1"] - whole["metrics"]["test"]["micro_f1"]) < 0.05


RECIPE = TINY.split("  - id: android")[0].replace("STUDENT_EPOCHS", "2")  # corpus, dataset, teacher, student


def test_a_recipe_runs_its_training_steps_under_torchrun(tmp_path):
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(RECIPE, "utf-8")
    plan = CliRunner().invoke(main, ["run", str(recipe), "--nproc", "2", "--dry-run"])
    assert plan.exit_code == 0 and plan.output.count("torchrun --nproc_per_node 2 $(which mobclf) ") == 2
    assert "torchrun --nproc_per_node 2 $(which mobclf) data prepare" not in plan.output

    first = CliRunner().invoke(main, ["run", str(recipe), "--nproc", "2"])
    assert first.exit_code == 0, first.output
    for step, processes in (("dataset", None), ("teacher", 2), ("student", 2)):
        manifest = load_artifact(tmp_path / "work" / step).manifest
        assert manifest.get("training", {}).get("processes") == processes
        assert manifest["lineage"]["recipe_step"]["step"] == step  # the recipe knows it made it
    again = CliRunner().invoke(main, ["run", str(recipe), "--nproc", "2"])
    assert again.exit_code == 0 and "4 up to date" in again.output
