"""``mobclf demo``: the whole path on a corpus of the project's own making, in a few minutes on 2 CPU cores.

generate corpus → data prepare → train-teacher (a small BERT) → distil a TextCNN (KD + FitNets + attention
transfer) → eval both on test, then print what was done and where each artifact is.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table

from mobclf.artifacts import load_artifact
from mobclf.console import console
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.data.prepare import prepare_dataset
from mobclf.distill.distill import DistillPlan, distill
from mobclf.distill.textcnn_student import TextCnnConfig
from mobclf.errors import UserError
from mobclf.train.evaluate import evaluate
from mobclf.train.loop import FitConfig
from mobclf.train.teacher import TeacherConfig, train_teacher

MARKER = ".mobclf-demo"
DEMO_TEACHER = TeacherConfig(layers=2, hidden=128, heads=4, intermediate=256, max_length=40)
DEMO_PLAN = DistillPlan(losses={"soft_kd": 1.0, "hard_bce": 1.0, "hint_mse": 1.0, "attention_transfer": 1.0},
                        temperature=2.0, intermediate_epochs=1)


def _claim_workdir(out: Path, force: bool) -> None:
    """Use ``out`` only if it is new, empty, or an earlier demo's directory (with --force)."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise UserError("exists and was not made by `mobclf demo`; choose another --out", path=out)
        if not force:
            raise UserError("holds an earlier demo; pass --force to run it again there", path=out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by mobclf demo\n", encoding="utf-8")


def run_demo(out: Path, n_items: int = 3000, teacher_epochs: int = 6, student_epochs: int = 15, seed: int = 42,
             force: bool = False) -> dict:
    """Run the demo pipeline under ``out`` and return the test metrics of teacher and student."""
    out = Path(out)
    _claim_workdir(out, force)
    timings, start = {}, time.perf_counter()

    corpus = out / "corpus" / "demo-news.jsonl"
    corpus.parent.mkdir(exist_ok=True)
    generate_demo_corpus(corpus, n_items=n_items, seed=seed)
    dataset = prepare_dataset(train=corpus, out=out / "dataset", seed=seed, force=True).path
    timings["data"] = time.perf_counter() - start

    teacher = train_teacher(dataset, out / "teacher", DEMO_TEACHER,
                            FitConfig(epochs=teacher_epochs, batch_size=32, lr=5e-4, seed=seed), force=True).path
    timings["teacher"] = time.perf_counter() - start - sum(timings.values())

    student = distill(teacher, dataset, out / "student-textcnn", DEMO_PLAN, TextCnnConfig(),
                      FitConfig(epochs=student_epochs, batch_size=32, lr=2e-3, seed=seed), force=True).path
    timings["student"] = time.perf_counter() - start - sum(timings.values())

    results = {name: evaluate(path, dataset, "test") for name, path in (("teacher", teacher), ("student", student))}
    _print_summary(out, {"corpus": corpus, "dataset": dataset, "teacher": teacher, "student": student}, results,
                   timings)
    return results


def _print_summary(out: Path, paths: dict, results: dict, timings: dict) -> None:
    table = Table(title="mobclf demo: test set")
    for column in ("model", "micro-F1", "macro-F1", "subset acc.", "agreement with teacher", "artifact"):
        table.add_column(column)
    agreement = load_artifact(paths["student"]).manifest["metrics"]["agreement_with_teacher"]["test"]
    for name, agrees in (("teacher", 1.0), ("student", agreement)):
        metrics = results[name]
        table.add_row(name, f"{metrics['micro_f1']:.4f}", f"{metrics['macro_f1']:.4f}",
                      f"{metrics['subset_accuracy']:.4f}", f"{agrees:.4f}", str(paths[name]))
    console.print(table)
    console.print("time: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items()))
    console.print(f"corpus {paths['corpus']}, dataset {paths['dataset']}; next: `mobclf eval --model "
                  f"{paths['student']} --data {paths['dataset']} --split test`")
