"""The native ExecuTorch runner (mobclf.native): built from the installed wheel's C++ SDK, its logits equal the
Python runtime's for tiny TextCNN and TinyBERT programs in fp32 and INT8, on this machine and cross-built for aarch64
(run under qemu)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mobclf.artifacts import load_artifact
from mobclf.compress.quantize import Attempt, int8_embeddings, xnnpack_quantizer
from mobclf.errors import UserError
from mobclf.export.executorch import PteRunner, program_rows, to_pte
from mobclf.export.exportable import ExportableClassifier, min_length
from mobclf.models import load_classifier
from mobclf.native.runner import build_runner, cold_start_ms, run_pte, target
from mobclf.text import load_tokenizer

PROGRAMS = [(student, precision) for student in ("textcnn", "tinybert") for precision in ("fp32", "int8")]


@pytest.fixture(scope="module")
def programs(students, tmp_path_factory):
    """``{(student, precision): (model.pte, rows, Python runtime's logits)}`` for 40 demo headlines (the first 16
    calibrate the INT8 programs)."""
    root = tmp_path_factory.mktemp("native")
    lines = (students / "news.jsonl").read_text("utf-8").splitlines()[:40]
    texts = [json.loads(line)["text"] for line in lines]
    built = {}
    for student, precision in PROGRAMS:
        artifact = load_artifact(students / student)
        model = load_classifier(artifact)
        encoded = load_tokenizer(artifact.file("tokenizer")).encode_batch(texts)
        rows = program_rows(encoded["input_ids"], encoded["attention_mask"], min_length(model))
        exportable = ExportableClassifier(model)
        max_length = artifact.manifest["tokenizer"]["max_length"]
        static = xnnpack_quantizer(Attempt("static", 16, "int8"))
        lowered = (to_pte(exportable, max_length) if precision == "fp32" else
                   to_pte(int8_embeddings(exportable), max_length, static, rows[:16]))
        pte = root / f"{student}-{precision}.pte"
        pte.write_bytes(lowered.pte)
        python = PteRunner(pte, min_length(model))
        built[student, precision] = pte, rows, np.concatenate([python(ids, mask).numpy() for ids, mask in rows])
    return built


@pytest.mark.parametrize("student, precision", PROGRAMS)
def test_the_native_runner_gives_the_python_runtimes_logits(programs, student, precision):
    pte, rows, python = programs[student, precision]
    run = run_pte(build_runner(), pte, rows, warmup=3)
    assert run.logits.shape == python.shape
    np.testing.assert_array_equal(run.logits, python)  # the same kernels on the same input: the same bits
    assert len(run.ms) == len(rows) and min(run.ms) > 0 and run.load_ms > 0 and run.first_inference_ms > 0
    # its own peak (VmHWM), not the ~0.5 GB of the Python process that started it
    assert 1 < run.peak_rss_mb < 100


@pytest.mark.parametrize("student", ["textcnn", "tinybert"])
def test_the_runner_cross_built_for_aarch64_gives_the_same_logits_under_qemu(programs, student):
    for precision in ("fp32", "int8"):
        pte, rows, python = programs[student, precision]
        arm = run_pte(build_runner("aarch64"), pte, rows[:8])
        # other SIMD kernels (NEON, not AVX) may sum in another order: equal to float rounding (INT8: to the bit)
        np.testing.assert_allclose(arm.logits, python[:8], rtol=1e-5, atol=1e-5)


def test_cold_start_is_one_whole_process_per_repeat(programs):
    pte, rows, _ = programs["textcnn", "int8"]
    starts = cold_start_ms(build_runner(), pte, rows[0], repeats=3)
    assert len(starts) == 3 and min(starts) > 0


def test_native_failures_are_one_line(programs, tmp_path, monkeypatch):
    broken = tmp_path / "broken.pte"
    broken.write_bytes(b"not a program")
    _, rows, _ = programs["textcnn", "fp32"]
    with pytest.raises(UserError, match=r"broken.pte: the native runner failed: .*cannot load"):
        run_pte(build_runner(), broken, rows[:1])
    monkeypatch.setattr("sys.prefix", str(tmp_path / "bare-environment"))
    with pytest.raises(UserError, match="install-native-tools.sh"):
        target("aarch64")
    with pytest.raises(UserError, match="unknown native target 'riscv'"):
        target("riscv")
