"""THUCNews distillation benchmark: a BERT-base-geometry teacher trained from scratch, TextCNN students with the
ablation KD only / +FitNets / +attention transfer / all (with --unlabeled-student also all + 20k unlabelled TNEWS
headlines as transfer texts), and the TF-IDF + logistic-regression baseline (default C, and C chosen on val).

    python benchmarks/thucnews_distill.py                      # reads ../shared/data/thucnews
    python benchmarks/thucnews_distill.py --data-root DIR --work DIR --teacher-epochs 5

Artifacts go to --work (default ~/.cache/mobclf/benchmarks/thucnews, outside git) and are reused when they exist
and verify, so the hours of teacher training are paid once. Results: benchmarks/results/thucnews-distill.json (the
result format of DESIGN.md, plus wall time per step) and thucnews-distill.md.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import torch

from mobclf.artifacts import load_artifact
from mobclf.data.dataset import load_dataset
from mobclf.data.prepare import prepare_dataset
from mobclf.distill.distill import DistillPlan, distill
from mobclf.distill.textcnn_student import TextCnnConfig
from mobclf.distill.teacher_cache import teacher_predictions
from mobclf.errors import UserError
from mobclf.models import load_classifier
from mobclf.models.tfidf import fit_tfidf_baseline
from mobclf.text import load_tokenizer
from mobclf.train.loop import FitConfig
from mobclf.train.metrics import agreement, classification_metrics
from mobclf.train.teacher import TeacherConfig, train_teacher

HERE = Path(__file__).resolve().parent
BERT_BASE = TeacherConfig(layers=12, hidden=768, heads=12, tokenizer="char", max_length=32)
KD = {"soft_kd": 1.0, "hard_bce": 1.0}
STUDENTS = {  # the ablation: name → losses (weights chosen so each term starts near the size of the KD term)
    "textcnn-kd": KD,
    "textcnn-kd-fitnets": {**KD, "hint_mse": 1.0},
    "textcnn-kd-at": {**KD, "attention_transfer": 1.0},
    "textcnn-all": {**KD, "hint_mse": 1.0, "attention_transfer": 1.0},
}
UNLABELED_STUDENT = "textcnn-all-unlabeled"  # all losses + 20k unlabelled TNEWS headlines (--unlabeled-student)


def reuse_or_run(path: Path, kind: str, step):
    """Load ``path`` if it is a verified artifact of ``kind`` (wall time None: not measured in this run);
    otherwise run ``step``, which writes it, and time it."""
    try:
        return load_artifact(path, kind=kind), None
    except UserError:
        start = time.perf_counter()
        artifact = step()
        return artifact, time.perf_counter() - start


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    return models[0] if models else platform.processor() or platform.machine()


def row(name, kind, arch, metrics, agreement_score, artifact=None, params=None, size_bytes=None, seconds=None):
    return {"name": name, "kind": kind, "arch": arch, "runtime": "eager" if arch != "tfidf-lr" else "sklearn",
            "precision": "fp32", "micro_f1": metrics["micro_f1"], "macro_f1": metrics["macro_f1"],
            "accuracy": metrics["subset_accuracy"], "agreement_with_teacher": agreement_score,
            "size_bytes": size_bytes if artifact is None else artifact.file("model.safetensors").stat().st_size,
            "params": params if artifact is None else artifact.manifest["params"],
            "latency_ms_p50": None, "latency_ms_p95": None, "throughput_per_s": None,
            "wall_time_s": None if seconds is None else round(seconds, 1)}


@click.command()
@click.option("--data-root", default=HERE.parent.parent / "shared" / "data", type=click.Path(path_type=Path),
              show_default=True)
@click.option("--work", default=Path.home() / ".cache" / "mobclf" / "benchmarks" / "thucnews",
              type=click.Path(path_type=Path), show_default=True)
@click.option("--teacher-epochs", default=5, show_default=True)
@click.option("--student-epochs", default=20, show_default=True)
@click.option("--results", default=HERE / "results", type=click.Path(path_type=Path), show_default=True)
@click.option("--unlabeled-student", is_flag=True,
              help="Also distil with the 20k unlabelled TNEWS headlines as transfer texts (one more teacher pass).")
def main(data_root: Path, work: Path, teacher_epochs: int, student_epochs: int, results: Path,
         unlabeled_student: bool) -> None:
    source = data_root / "thucnews"
    dataset_artifact, data_seconds = reuse_or_run(work / "dataset", "dataset", lambda: prepare_dataset(
        train=source / "train.jsonl", val=source / "val.jsonl", test=source / "test.jsonl", out=work / "dataset"))
    dataset = load_dataset(dataset_artifact.path)
    teacher, teacher_seconds = reuse_or_run(work / "teacher-bert-base", "teacher", lambda: train_teacher(
        dataset_artifact.path, work / "teacher-bert-base", BERT_BASE,
        FitConfig(epochs=teacher_epochs, batch_size=32, lr=1e-4, patience=2)))
    teacher_seconds = teacher_seconds or teacher.manifest["training"]["seconds"]
    test_targets = dataset.targets("test")

    teacher_test_predictions = teacher_predictions(teacher, load_classifier(teacher),
                                                   load_tokenizer(teacher.file("tokenizer")), dataset.texts("test"),
                                                   single_label=not dataset.multi_label)
    rows = [row("teacher-bert-base-fp32", "teacher", "bert", teacher.manifest["metrics"]["test"], 1.0, teacher,
                seconds=teacher_seconds)]

    for name, c_values in (("tfidf-char12-lr", [1.0]), ("tfidf-char12-lr-c-tuned-on-val", [1.0, 10.0, 100.0])):
        start = time.perf_counter()
        fits = [fit_tfidf_baseline(dataset.texts("train"), dataset.targets("train"), language=dataset.language,
                                   multi_label=dataset.multi_label, C=c) for c in c_values]
        val_f1 = [classification_metrics(dataset.targets("val"), fitted.predict(dataset.texts("val")),
                                         dataset.labels)["micro_f1"] for fitted in fits]
        baseline = fits[val_f1.index(max(val_f1))]
        baseline_predictions = baseline.predict(dataset.texts("test"))
        rows.append(row(name, "baseline", "tfidf-lr",
                        classification_metrics(test_targets, baseline_predictions, dataset.labels),
                        agreement(baseline_predictions, teacher_test_predictions), params=baseline.params,
                        size_bytes=baseline.size_bytes, seconds=time.perf_counter() - start))

    vectors = data_root / "char_embeddings_tencent"
    students = {**STUDENTS, **({UNLABELED_STUDENT: STUDENTS["textcnn-all"]} if unlabeled_student else {})}
    student_rows = {}
    # "all" runs first: its teacher pass caches every layer, which then serves the runs with fewer losses.
    for name in sorted(students, key=lambda student_name: student_name != "textcnn-all"):
        losses = students[name]
        plan = DistillPlan(losses=losses, temperature=2.0, intermediate_epochs=2 if "hint_mse" in losses else 0)
        unlabeled = data_root / "tnews_fewclue" / "unlabeled.jsonl" if name == UNLABELED_STUDENT else None
        student, seconds = reuse_or_run(work / name, "student", lambda: distill(
            teacher.path, dataset_artifact.path, work / name, plan, TextCnnConfig(tokenizer="char", vectors=vectors),
            FitConfig(epochs=student_epochs, batch_size=64, lr=1e-3, patience=3), unlabeled=unlabeled))
        student_rows[name] = row(name, "student", "textcnn", student.manifest["metrics"]["test"],
                                 student.manifest["metrics"]["agreement_with_teacher"]["test"], student,
                                 seconds=seconds or student.manifest["training"]["seconds"])
    rows.extend(student_rows[name] for name in students)

    report = {"dataset": "thucnews", "split": "test", "baseline": "teacher-bert-base-fp32",
              "machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(),
                          "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
              "steps": {"data_s": None if data_seconds is None else round(data_seconds, 1),
                        "teacher_train_s": round(teacher_seconds, 1),
                        "teacher_epochs": teacher.manifest["training"]["best_epoch"]},
              "rows": rows}
    results.mkdir(parents=True, exist_ok=True)
    (results / "thucnews-distill.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (results / "thucnews-distill.md").write_text(markdown(report), encoding="utf-8")
    click.echo(markdown(report))


def markdown(report: dict) -> str:
    teacher_f1 = report["rows"][0]["micro_f1"]
    lines = ["# THUCNews: teacher → TextCNN students (test split)", "",
             "| model | accuracy | micro-F1 | macro-F1 | % of teacher micro-F1 | agreement with teacher | params | "
             "wall time (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['name']} | {r['accuracy']:.4f} | {r['micro_f1']:.4f} | {r['macro_f1']:.4f} | "
                     f"{100 * r['micro_f1'] / teacher_f1:.1f}% | {r['agreement_with_teacher']:.4f} | "
                     f"{r['params']:,} | {r['wall_time_s']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
