"""Training under torchrun: two gloo processes on CPU give the weights and metrics of one process with the same
global batch (dropout off, so both runs draw nothing at random), for the teacher, both students (every intermediate
loss) and pruning's recovery; rank 0 alone writes and speaks; ranks that disagree are caught."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mobclf.artifacts import load_artifact
from mobclf.data.demo_corpus import generate_demo_corpus

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
    "pruned": ["prune", "--from", "textcnn", "--data", "data", "--ratio", "0.5", "--steps", "1", "--recovery-epochs", "2"],
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

