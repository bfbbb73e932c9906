"""What a user reads on stderr: none of the toolchain's noise (quiet.py), plain progress lines instead of bars when
stderr is a file, and scores named for what they are."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import run
from rich.console import Console
from rich.progress import Progress

import mobclf.console
import mobclf.train.loop
from mobclf import quiet
from mobclf.console import PlainProgress, progress
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.train.loop import FitConfig, fit

# What the pinned torch / torchao / onnxruntime / ExecuTorch printed on every quantize and export (issue 13, §4).
NOISE = [r"Exporting a model while it is in training mode", r"LeafSpec", r"TF32 acceleration on top of oneDNN",
         r"torchvision is not installed", r"cpuinfo_utils", r"threadpool\.cpp", r"pre-processing before quantization",
         r"Failed to load .*_C_", r"is an Enum subclass", r"Detected no triton",
         r"This API is experimental", r"The axis name: \w+ will not",
         r"^\S+:\d+: \w*Warning: "]  # and no Python warning at all
BAR = ["━", "…"]  # a rich bar printed into a file: its blocks and the ellipsis that cuts it to the file's width


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A dataset, a one-epoch teacher and TextCNN student (the teacher's output kept in ``teacher.txt``)."""
    root = tmp_path_factory.mktemp("quiet")
    generate_demo_corpus(root / "news.jsonl", n_items=300, seed=1)
    assert run("data", "prepare", root / "news.jsonl", "--out", root / "data").exit_code == 0
    result = run("train-teacher", "--data", root / "data", "--out", root / "teacher", "--layers", "1", "--hidden",
                 "32", "--heads", "2", "--max-length", "32", "--epochs", "2", "--lr", "2e-3")
    assert result.exit_code == 0, result.output
    (root / "teacher.txt").write_text(result.output, "utf-8")
    result = run("distill", "textcnn", "--teacher", root / "teacher", "--data", root / "data", "--out",
                 root / "student", "--embedding-dim", "16", "--filters", "8", "--epochs", "1")
    assert result.exit_code == 0, result.output
    return root


def command(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The real console script, stderr a pipe (as in a log file or CI), in a fresh process."""
    script = Path(sys.executable).with_name("mobclf")
    return subprocess.run([str(script), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "80"})


def assert_no_noise(stderr: str) -> None:
    noisy = [line for line in stderr.splitlines()
             if any(re.search(pattern, line) for pattern in NOISE) or any(mark in line for mark in BAR)]
    assert noisy == [], stderr


def test_an_export_to_both_runtimes_prints_no_toolchain_noise_and_no_bars(tiny):
    """One process through torch.export, torch.onnx (as `quantize --runtime onnx` uses it too), ExecuTorch's
    lowering and runtime, and onnxruntime: the places the noise came from."""
    done = command("export", "--from", "student", "--target", "all", "--out", "bundle", "--parity-texts", "16",
                   cwd=tiny)
    assert done.returncode == 0, done.stderr
    assert_no_noise(done.stderr)
    # mobclf's own lines still show
    assert "model.pte: label-set agreement" in done.stderr and "model.onnx: label-set agreement" in done.stderr
    assert (tiny / "bundle" / "model.pte").is_file() and (tiny / "bundle" / "model.onnx").is_file()


def test_a_bench_of_a_pte_at_one_and_two_threads_prints_no_toolchain_noise(tiny):
    """bench resets ExecuTorch's threadpool for each thread count; every reset probed the CPU aloud."""
    done = command("export", "--from", "student", "--target", "android", "--out", "phone", "--parity-texts", "16",
                   cwd=tiny)
    assert done.returncode == 0, done.stderr
    done = command("bench", "--model", "phone", "--data", "data", "--latency-texts", "4", "--cold-starts", "1",
                   "--out", "report", cwd=tiny)
    assert done.returncode == 0, done.stderr
    assert_no_noise(done.stderr)
    assert "phone/model.pte: executorch" in done.stderr


def test_the_noise_filters_match_the_libraries_messages_and_nothing_else(caplog):
    messages = [(FutureWarning, "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) "
                                "and treespec.is_leaf()` instead."),
                (UserWarning, "TF32 acceleration on top of oneDNN is available for Intel GPUs. The current Torch "
                              "version does not have Intel GPU Support."),
                (UserWarning, "# The axis name: batch will not be used, since it shares the same shape constraints "
                              "with another axis: batch."),
                (DeprecationWarning, "This API is experimental and subject to change without notice."),
                (UserWarning, "Output Buffer not found. Tensor Debug Data will not be available."),
                (FutureWarning, "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use "
                                "`is_activation_checkpointing` instead.")]
    kept = [(UserWarning, "TF32 is great"), (FutureWarning, "treespec changes"), (UserWarning, "mobclf: a warning")]
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # as under -W always: only quiet's filters stand between a warning and stderr
        quiet.filter_warnings()
        for category, message in messages + kept:
            warnings.warn(message, category)
    assert [str(w.message) for w in shown] == [message for _, message in kept]

    with caplog.at_level(logging.INFO):
        logging.getLogger("torch.onnx._internal.exporter._registration").warning(
            "torchvision is not installed. Skipping torchvision::nms")
        logging.getLogger("torchao").warning("Failed to load /x/torchao/_C_mxfp8.cpython-310.so: Could not load")
        logging.getLogger("torchao.kernel.intmm").warning(
            "Warning: Detected no triton, on systems without Triton certain kernels will not work")
        logging.getLogger("torch.utils._pytree").warning(
            "%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type.", "E")
        logging.getLogger().warning("Please consider to run pre-processing before quantization. Refer to example:")
        logging.getLogger("torchao").warning("a torchao warning the user may need")
        logging.getLogger("onnxruntime").warning("Please consider to run pre-processing before quantization.")
    assert [record.getMessage() for record in caplog.records] == [
        "a torchao warning the user may need", "Please consider to run pre-processing before quantization."]


def test_native_stderr_drops_only_the_known_lines(capfd):
    with quiet.native_stderr():
        os.write(2, b"[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\n")
        os.write(2, b"an error from native code\n")
    assert capfd.readouterr().err == "an error from native code\n"


def test_without_a_terminal_progress_is_plain_lines(monkeypatch):
    log = io.StringIO()
    plain = Console(file=log, width=60)  # a file: not a terminal
    monkeypatch.setattr(mobclf.console, "console", plain)
    monkeypatch.setattr(mobclf.train.loop, "console", plain)
    assert isinstance(progress(), PlainProgress)

    model = torch.nn.Linear(4, 1)
    data = torch.randn(64, 4)
    fit(model, 64, lambda index: model(data[index]).pow(2).mean(), lambda: 0.5, FitConfig(epochs=2, batch_size=8),
        "tiny")
    with PlainProgress(after=0) as bar:  # a task long enough to report: one line per tenth
        task = bar.add_task("predicting", total=50, status="")
        for _ in range(50):
            bar.advance(task)
    text = log.getvalue()
    assert not any(mark in text for mark in BAR), text
    assert "tiny: epoch 2 loss" in text
    lines = [line.split("predicting: ", 1)[1].split()[0] for line in text.splitlines() if "predicting: " in line]
    assert lines == [f"{5 * tenth}/50" for tenth in range(1, 11)]

    monkeypatch.setattr(mobclf.console, "console", Console(file=io.StringIO(), force_terminal=True))
    assert isinstance(progress(), Progress)


def test_the_teacher_says_which_score_is_at_threshold_0_5_and_which_after_tuning(tiny):
    text = " ".join((tiny / "teacher.txt").read_text("utf-8").split())
    text = re.sub(r" \S+\.py:\d+ ", " ", text)  # rich wraps a log line at the runner's width, its source in between
    assert re.search(r"teacher: epoch 1 loss [\d.]+ val micro-F1 \(threshold 0\.5\) [\d.]+", text), text
    assert re.search(r"teacher: best epoch \d, val micro-F1 [\d.]+ at threshold 0\.5; with per-label thresholds "
                     r"tuned on val: val micro-F1 [\d.]+, test micro-F1 [\d.]+", text), text
