"""``mobclf demo``: the whole path on a corpus of the project's own making, in a few minutes on 2 CPU cores.

generate corpus (+ unlabelled headlines of the same kind) → data prepare → pretrain (masked LM, whole-word masking)
→ train-teacher (a small BERT from the pre-trained checkpoint) → distil a TextCNN (KD + FitNets + attention
transfer) and a TinyBERT (embedding + hidden + attention, then prediction) → eval on test, then print what was done
and where each artifact is.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table

from mobclf.artifacts import load_artifact
from mobclf.console import console
from mobclf.data.demo_corpus import generate_demo_corpus
from mobclf.distill.distill import DistillPlan, distill
from mobclf.distill.textcnn_student import TextCnnConfig
from mobclf.distill.tinybert_student import TinyBertConfig
from mobclf.errors import UserError
from mobclf.stages import DATA_PREPARE, PrepareConfig
from mobclf.train.evaluate import evaluate
from mobclf.train.loop import FitConfig
from mobclf.train.pretrain import pretrain
from mobclf.train.teacher import TeacherConfig, train_teacher

MARKER = ".mobclf-demo"
DEMO_TEACHER = TeacherConfig(layers=2, hidden=128, heads=4, intermediate=256, max_length=40)
DEMO_PLAN = DistillPlan(losses={"soft_kd": 1.0, "hard_bce": 1.0, "hint_mse": 1.0, "attention_transfer": 1.0},
                        temperature=2.0, intermediate_epochs=1)
DEMO_TINYBERT = TinyBertConfig(layers=2, hidden=64, heads=4, intermediate=128)
DEMO_TINYBERT_PLAN = DistillPlan(losses={"soft_kd": 1.0, "hard_bce": 1.0, "embedding_mse": 1.0, "hidden_mse": 1.0,
                                         "attention_mse": 1.0}, temperature=2.0, intermediate_epochs=2)


def _claim_workdir(out: Path, force: bool) -> None:
    """Use ``out`` only if it is new, empty, or an earlier demo's directory (with --force)."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise UserError("exists and was not made by `mobclf demo`; choose another --out", path=out)
        if not force:
            raise UserError("holds an earlier demo; pass --force to run it again there", path=out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by mobclf demo\n", encoding="utf-8")


def run_demo(out: Path, n_items: int = 3000, pretrain_epochs: int = 3, teacher_epochs: int = 6,
             student_epochs: int = 15, seed: int = 42, force: bool = False) -> dict:
    """Run the demo pipeline under ``out`` and return the test metrics of the teacher and each student."""
    out = Path(out)
    _claim_workdir(out, force)
    timings, start = {}, time.perf_counter()

    def lap(stage: str) -> None:
        timings[stage] = time.perf_counter() - start - sum(timings.values())

    corpus, unlabeled = out / "corpus" / "demo-news.jsonl", out / "corpus" / "more-news.jsonl"
    corpus.parent.mkdir(exist_ok=True)
    generate_demo_corpus(corpus, n_items=n_items, seed=seed)
    generate_demo_corpus(unlabeled, n_items=n_items, seed=seed + 1)  # pre-training reads its texts only
    dataset = DATA_PREPARE.call(PrepareConfig(seed=seed), {"train": corpus}, out / "dataset", force=True).path
    lap("data")

    teacher_geometry = {key: getattr(DEMO_TEACHER, key) for key in ("layers", "hidden", "heads", "intermediate")}
    pretrained = pretrain([unlabeled], out / "pretrained", data=dataset, max_length=DEMO_TEACHER.max_length,
                          **teacher_geometry, fit_config=FitConfig(epochs=pretrain_epochs, batch_size=32, lr=1e-3,
                                                                   seed=seed), force=True).path
    lap("pretrain")
    teacher = train_teacher(dataset, out / "teacher", DEMO_TEACHER,
                            FitConfig(epochs=teacher_epochs, batch_size=32, lr=5e-4, seed=seed), init=pretrained,
                            force=True).path
    lap("teacher")

    students = {"student-textcnn": distill(teacher, dataset, out / "student-textcnn", DEMO_PLAN, TextCnnConfig(),
                                           FitConfig(epochs=student_epochs, batch_size=32, lr=2e-3, seed=seed),
                                           force=True).path}
    lap("textcnn")
    students["student-tinybert"] = distill(teacher, dataset, out / "student-tinybert", DEMO_TINYBERT_PLAN,
                                           DEMO_TINYBERT, FitConfig(epochs=student_epochs, batch_size=32, lr=1e-3,
                                                                    seed=seed), force=True).path
    lap("tinybert")

    models = {"teacher": teacher, **students}
    results = {name: evaluate(path, dataset, "test") for name, path in models.items()}
    _print_summary(models, results, timings, {"corpus": corpus, "unlabeled": unlabeled, "dataset": dataset,
                                              "pretrained": pretrained})
    return results


def _print_summary(models: dict, results: dict, timings: dict, inputs: dict) -> None:
    table = Table(title="mobclf demo: test set")
    for column in ("model", "micro-F1", "macro-F1", "subset acc.", "agreement with teacher", "params", "artifact"):
        table.add_column(column)
    for name, path in models.items():
        manifest, metrics = load_artifact(path).manifest, results[name]
        agrees = manifest["metrics"].get("agreement_with_teacher", {}).get("test", 1.0)
        table.add_row(name, f"{metrics['micro_f1']:.4f}", f"{metrics['macro_f1']:.4f}",
                      f"{metrics['subset_accuracy']:.4f}", f"{agrees:.4f}", f"{manifest['params']:,}", str(path))
    console.print(table)
    console.print("time: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items()))
    console.print(", ".join(f"{name} {path}" for name, path in inputs.items()) + "; next: `mobclf eval --model "
                  f"{models['student-tinybert']} --data {inputs['dataset']} --split test`")
