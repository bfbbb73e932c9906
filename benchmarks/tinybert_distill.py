"""TinyBERT benchmark (issue 3) on THUCNews (zh, single-label) or Reuters-21578 ModApte (en, 90 labels):

1. a teacher of one geometry (6 × 512) trained from scratch and the same teacher after masked-LM pre-training
   (`mobclf pretrain`, whole-word masking) on unlabelled text — THUCNews: the 20k unlabelled TNEWS headlines + the
   training headlines (in-domain; the 20k long auto-news passages would triple the cost on 2 CPU cores); Reuters:
   its training documents;
2. a TinyBERT-4 student (4 × 312, FFN 1200) MLM-pre-trained on the same text with the teacher's tokenizer, then
   task-distilled from the pre-trained teacher with the ablation prediction KD only / + hidden / + attention / all
   (embedding + hidden + attention, then prediction: TinyBERT's two stages);
3. for comparison the TextCNN student (KD) of the same teacher and the TF-IDF + logistic-regression baseline.

    python benchmarks/tinybert_distill.py --dataset thucnews      # reads ../shared/data
    python benchmarks/tinybert_distill.py --dataset reuters

Artifacts go to ~/.cache/mobclf/benchmarks/<dataset> (outside git) and are reused when they exist and verify, and
pre-training resumes from its last checkpoint, so an interrupted run continues where it stopped. Results:
benchmarks/results/<dataset>-tinybert.{json,md}.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import click
from common import DATA_ROOT, WORK_ROOT, artifact_row, machine, reuse_or_run, tfidf_rows, write_report

from mobclf.data.dataset import load_dataset
from mobclf.data.prepare import prepare_dataset
from mobclf.distill.distill import DistillPlan, distill
from mobclf.distill.teacher_cache import teacher_predictions
from mobclf.distill.textcnn_student import TextCnnConfig
from mobclf.distill.tinybert_student import TinyBertConfig
from mobclf.models import load_classifier
from mobclf.models.bert import TINYBERT_4
from mobclf.text import load_tokenizer
from mobclf.train.loop import FitConfig
from mobclf.train.metrics import agreement
from mobclf.train.pretrain import pretrain
from mobclf.train.teacher import TeacherConfig, train_teacher

PREDICTION = {"soft_kd": 1.0, "hard_bce": 1.0}
ABLATION = {  # name → losses; the intermediate losses train first on their own (TinyBERT's two stages)
    "tinybert4-pred": PREDICTION,
    "tinybert4-pred-hidden": {**PREDICTION, "embedding_mse": 1.0, "hidden_mse": 1.0},
    "tinybert4-pred-attn": {**PREDICTION, "attention_mse": 1.0},
    "tinybert4-all": {**PREDICTION, "embedding_mse": 1.0, "hidden_mse": 1.0, "attention_mse": 1.0},
}


@dataclass
class Setting:
    """Where a data set's files are and the geometry/length/epochs used for it."""

    files: dict[str, str]
    unlabeled: list[str]
    tokenizer: str
    max_length: int
    pretrain_max_length: int
    teacher: TeacherConfig
    teacher_epochs: int
    pretrain_epochs: int
    vectors: str | None = None
    vocab_size: int | None = None
    student_epochs: int = 6


TEACHER_6x512 = dict(layers=6, hidden=512, heads=8, intermediate=2048)
SETTINGS = {
    "thucnews": Setting(
        files={"train": "thucnews/train.jsonl", "val": "thucnews/val.jsonl", "test": "thucnews/test.jsonl"},
        unlabeled=["tnews_fewclue/unlabeled.jsonl"], tokenizer="char", max_length=32, pretrain_max_length=64,
        teacher=TeacherConfig(**TEACHER_6x512, max_length=32), teacher_epochs=5, pretrain_epochs=3,
        vectors="char_embeddings_tencent"),
    "reuters": Setting(
        files={"train": "reuters21578_modapte/train.jsonl", "test": "reuters21578_modapte/test.jsonl"},
        unlabeled=[], tokenizer="wordpiece", vocab_size=16000, max_length=128, pretrain_max_length=128,
        teacher=TeacherConfig(**TEACHER_6x512, tokenizer="wordpiece", vocab_size=16000, max_length=128),
        teacher_epochs=10, pretrain_epochs=5),
}


@click.command()
@click.option("--dataset", "name", type=click.Choice(sorted(SETTINGS)), required=True)
@click.option("--data-root", default=DATA_ROOT, type=click.Path(path_type=Path), show_default=True)
@click.option("--work", type=click.Path(path_type=Path), help="[default: ~/.cache/mobclf/benchmarks/<dataset>]")
@click.option("--results", default=Path(__file__).parent / "results", type=click.Path(path_type=Path),
              show_default=True)
@click.option("--skip-scratch-teacher", is_flag=True, help="Leave out the teacher without pre-training.")
def main(name: str, data_root: Path, work: Path | None, results: Path, skip_scratch_teacher: bool) -> None:
    setting, work = SETTINGS[name], work or WORK_ROOT / name
    files = {split: data_root / path for split, path in setting.files.items()}
    data_artifact, _ = reuse_or_run(work / "dataset", "dataset",
                                    lambda: prepare_dataset(out=work / "dataset", **files))
    dataset = load_dataset(data_artifact.path)
    corpus = [data_root / path for path in setting.unlabeled]
    mlm = FitConfig(epochs=setting.pretrain_epochs, batch_size=32, lr=5e-4, patience=1)
    student_mlm = FitConfig(**{**asdict(mlm), "lr": 1e-3})  # the smaller model trains stably at a higher rate

    pretrained_teacher, _ = reuse_or_run(work / "pretrain-teacher", "pretrained", lambda: pretrain(
        corpus, work / "pretrain-teacher", data=data_artifact.path, tokenizer=setting.tokenizer,
        vocab_size=setting.vocab_size, max_length=setting.pretrain_max_length, layers=setting.teacher.layers,
        hidden=setting.teacher.hidden, heads=setting.teacher.heads, intermediate=setting.teacher.intermediate,
        fit_config=mlm))
    fine_tune = FitConfig(epochs=setting.teacher_epochs, batch_size=32, lr=1e-4, patience=2)
    teacher, teacher_seconds = reuse_or_run(work / "teacher-6x512-mlm", "teacher", lambda: train_teacher(
        data_artifact.path, work / "teacher-6x512-mlm", setting.teacher, fine_tune, init=pretrained_teacher.path))
    teachers = {"teacher-6x512-mlm": (teacher, teacher_seconds)}  # the students' teacher, whatever the other scores

    pretrained_student, _ = reuse_or_run(
        work / "pretrain-tinybert4", "pretrained", lambda: pretrain(
            corpus, work / "pretrain-tinybert4", data=data_artifact.path, tokenizer_dir=teacher.file("tokenizer"),
            max_length=setting.pretrain_max_length, layers=TINYBERT_4["layers"], hidden=TINYBERT_4["hidden"],
            heads=TINYBERT_4["heads"], intermediate=TINYBERT_4["intermediate"], fit_config=student_mlm))
    students = {}
    for student_name, losses in ABLATION.items():
        plan = DistillPlan(losses=losses, temperature=2.0, intermediate_epochs=2 if len(losses) > 2 else 0)
        students[student_name] = reuse_or_run(work / student_name, "student", lambda: distill(
            teacher.path, data_artifact.path, work / student_name, plan,
            TinyBertConfig(init=pretrained_student.path),
            FitConfig(epochs=setting.student_epochs, batch_size=32, lr=1e-4, patience=2)))
    students["textcnn-kd"] = reuse_or_run(work / "textcnn-kd", "student", lambda: distill(
        teacher.path, data_artifact.path, work / "textcnn-kd", DistillPlan(losses=PREDICTION),
        TextCnnConfig(tokenizer=setting.tokenizer, vectors=data_root / setting.vectors if setting.vectors else None),
        FitConfig(epochs=20, batch_size=64, lr=1e-3, patience=3)))
    if not skip_scratch_teacher:  # the same teacher without pre-training, for comparison (trained last)
        teachers["teacher-6x512-scratch"] = reuse_or_run(
            work / "teacher-6x512-scratch", "teacher",
            lambda: train_teacher(data_artifact.path, work / "teacher-6x512-scratch", setting.teacher, fine_tune))

    def test_predictions(artifact):
        return teacher_predictions(artifact, load_classifier(artifact), load_tokenizer(artifact.file("tokenizer")),
                                   dataset.texts("test"), single_label=not dataset.multi_label)

    teacher_test = test_predictions(teacher)
    rows = [artifact_row(key, artifact, seconds, agreement(test_predictions(artifact), teacher_test))
            for key, (artifact, seconds) in teachers.items()]
    rows += [artifact_row(key, artifact, seconds) for key, (artifact, seconds) in students.items()]
    rows += tfidf_rows(dataset, teacher_test)
    report = {"dataset": name, "split": "test", "baseline": "teacher-6x512-mlm", "machine": machine(),
              "pretraining": {key: {"val_mlm_loss_initial": art.manifest["metrics"]["val_mlm_loss_initial"],
                                    "val_mlm_loss": art.manifest["metrics"]["val_mlm_loss"],
                                    "val_masked_accuracy": art.manifest["metrics"]["val_masked_accuracy"],
                                    "seconds": art.manifest["training"]["seconds"]}
                              for key, art in (("teacher", pretrained_teacher), ("tinybert4", pretrained_student))},
              "rows": rows}
    click.echo(write_report(results, f"{name}-tinybert", f"{name}: teachers with/without MLM pre-training → "
                                                          "TinyBERT-4 and TextCNN students (test split)", report))


if __name__ == "__main__":
    main()
