"""The README's demo figures are the ones its main-job command prints: the test runs that command (the shipped demo
recipe, at its full size, in a fresh process as a user would) and finds each figure, formatted as the README writes
it, in the README's text. The demo is deterministic, so a change that moves a figure must update the README too."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mobclf.artifacts import load_artifact

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_states_the_figures_the_demo_prints(demo_run):
    work, _ = demo_run
    report = json.loads((work / "report" / "report.json").read_text("utf-8"))
    rows = {row["name"]: row for row in report["rows"]}
    teacher, textcnn, tinybert = rows["teacher"], rows["student-textcnn"], rows["student-tinybert"]
    pte, onnx = rows["android/model.pte"], rows["onnx/model.onnx"]
    dataset = load_artifact(work / "dataset", kind="dataset").manifest
    stated = [
        f"{sum(dataset['splits'].values()):,} generated headlines, {len(dataset['labels'])} labels",
        f"teacher micro-F1 {teacher['micro_f1']:.4f} ({teacher['params'] / 1e6:.1f} M parameters)",
        f"TextCNN {textcnn['micro_f1']:.4f} (agreement with the teacher {textcnn['agreement_with_teacher']:.4f})",
        f"TinyBERT {tinybert['micro_f1']:.4f} ({tinybert['params'] / 1e6:.1f} M, agreement "
        f"{tinybert['agreement_with_teacher']:.4f})",
        f"INT8 `.pte` TextCNN {pte['micro_f1']:.4f} (agreement {pte['agreement_with_teacher']:.4f}, "
        f"{pte['size_bytes'] / 1e6:.2f} MB)",
        f"INT8 `.onnx` TinyBERT {onnx['micro_f1']:.4f} ({onnx['size_bytes'] / 1e6:.2f} MB)",
    ]
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text("utf-8"))
    assert [figure for figure in stated if figure not in readme] == []
