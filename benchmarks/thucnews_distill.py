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

from pathlib import Path

import click
from common import (
    DATA_ROOT,
    WORK_ROOT,
    artifact_row,
    reuse_or_run,
    tfidf_rows,
    write_report,
)
from mobclf.bench.report import machine
from mobclf.data.dataset import load_dataset
from mobclf.distill.teacher_cache import teacher_predictions
from mobclf.models import load_classifier
from mobclf.stages import (DATA_PREPARE, DISTILL_TOKEN_STUDENTS, TRAIN_TEACHER, FitConfig,
                           KnowledgeDistillation, PrepareConfig, TeacherConfig, TextCnnDistillConfig)
from mobclf.text import load_tokenizer

BERT_BASE = {"layers": 12, "hidden": 768, "heads": 12, "tokenizer": "char", "max_length": 32}
KD = {"soft_kd": 1.0, "hard_bce": 1.0}
STUDENTS = {  # the ablation: name → losses (weights chosen so each term starts near the size of the KD term)
    "textcnn-kd": KD,
    "textcnn-kd-fitnets": {**KD, "hint_mse": 1.0},
    "textcnn-kd-at": {**KD, "attention_transfer": 1.0},
    "textcnn-all": {**KD, "hint_mse": 1.0, "attention_transfer": 1.0},
}
UNLABELED_STUDENT = "textcnn-all-unlabeled"  # all losses + 20k unlabelled TNEWS headlines (--unlabeled-student)


@click.command()
@click.option("--data-root", default=DATA_ROOT, type=click.Path(path_type=Path), show_default=True)
@click.option("--work", default=WORK_ROOT / "thucnews", type=click.Path(path_type=Path), show_default=True)
@click.option("--teacher-epochs", default=5, show_default=True)
@click.option("--student-epochs", default=20, show_default=True)
@click.option("--results", default=Path(__file__).parent / "results", type=click.Path(path_type=Path),
              show_default=True)
@click.option("--unlabeled-student", is_flag=True,
              help="Also distil with the 20k unlabelled TNEWS headlines as transfer texts (one more teacher pass).")
def main(data_root: Path, work: Path, teacher_epochs: int, student_epochs: int, results: Path,
         unlabeled_student: bool) -> None:
    source = data_root / "thucnews"
    dataset_artifact, data_seconds = reuse_or_run(work / "dataset", "dataset", lambda: DATA_PREPARE.call(
        PrepareConfig(), {"train": source / "train.jsonl", "val": source / "val.jsonl", "test": source / "test.jsonl"},
        work / "dataset"))
    dataset = load_dataset(dataset_artifact.path)
    teacher_config = TeacherConfig(**BERT_BASE, fit=FitConfig(epochs=teacher_epochs, batch_size=32, lr=1e-4, patience=2))
    teacher, teacher_seconds = reuse_or_run(work / "teacher-bert-base", "teacher", lambda: TRAIN_TEACHER.call(
        teacher_config, {"data": dataset_artifact.path}, work / "teacher-bert-base"))
    teacher_seconds = teacher_seconds or teacher.manifest["training"]["seconds"]

    teacher_test_predictions = teacher_predictions(teacher, load_classifier(teacher),
                                                   load_tokenizer(teacher.file("tokenizer")), dataset.texts("test"),
                                                   single_label=not dataset.multi_label)
    rows = [artifact_row("teacher-bert-base-fp32", teacher, teacher_seconds),
            *tfidf_rows(dataset, teacher_test_predictions)]

    vectors = data_root / "char_embeddings_tencent"
    students = {**STUDENTS, **({UNLABELED_STUDENT: STUDENTS["textcnn-all"]} if unlabeled_student else {})}
    student_rows = {}
    # "all" runs first: its teacher pass caches every layer, which then serves the runs with fewer losses.
    for name in sorted(students, key=lambda student_name: student_name != "textcnn-all"):
        losses = students[name]
        config = TextCnnDistillConfig(
            kd=KnowledgeDistillation(losses=losses, temperature=2.0,
                                     intermediate_epochs=2 if "hint_mse" in losses else 0),
            tokenizer="char", vectors=vectors, fit=FitConfig(epochs=student_epochs, batch_size=64, lr=1e-3, patience=3))
        unlabeled = data_root / "tnews_fewclue" / "unlabeled.jsonl" if name == UNLABELED_STUDENT else None
        student, seconds = reuse_or_run(work / name, "student", lambda: DISTILL_TOKEN_STUDENTS["textcnn"].call(
            config, {"teacher": teacher.path, "data": dataset_artifact.path, "unlabeled": unlabeled}, work / name))
        student_rows[name] = artifact_row(name, student, seconds)
    rows.extend(student_rows[name] for name in students)

    report = {"dataset": "thucnews", "split": "test", "baseline": "teacher-bert-base-fp32", "machine": machine(),
              "steps": {"data_s": None if data_seconds is None else round(data_seconds, 1),
                        "teacher_train_s": round(teacher_seconds, 1),
                        "teacher_epochs": teacher.manifest["training"]["best_epoch"]},
              "rows": rows}
    click.echo(write_report(results, "thucnews-distill", "THUCNews: teacher → TextCNN students (test split)", report))


if __name__ == "__main__":
    main()
