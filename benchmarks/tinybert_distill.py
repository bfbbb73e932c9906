"""TinyBERT benchmark (issue 3) on THUCNews (zh, single-label) or Reuters-21578 ModApte (en, 90 labels):

1. the teacher, trained from scratch: on THUCNews BERT-base geometry (12 × 768, the one of `thucnews_distill.py`,
   reused from the same work directory); on Reuters 6 × 512 at 64 tokens, because BERT-base at 128 tokens costs
   10 s a step on 2 CPU cores (36 min an epoch);
2. TinyBERT-4 students (4 × 312, 12 heads, FFN 1200, the teacher's tokens) distilled with the ablation prediction
   KD only / + hidden (embedding + hidden MSE) / + attention / all, the intermediate losses first on their own
   (TinyBERT's two stages), uniform layer map 1→3, 2→6, 3→9, 4→12;
3. for comparison the TextCNN student (KD) of the same teacher and the TF-IDF + logistic-regression baseline;
4. with --pretraining: a 6 × 512 teacher fine-tuned from a `mobclf pretrain` checkpoint (masked LM with whole-word
   masking on the training texts plus unlabelled text: THUCNews + the 20k TNEWS headlines; Reuters has none) and
   the same teacher from scratch (on Reuters the main teacher itself).

    python benchmarks/tinybert_distill.py --dataset thucnews      # reads ../shared/data
    python benchmarks/tinybert_distill.py --dataset thucnews --pretraining
    python benchmarks/tinybert_distill.py --dataset reuters --pretraining

Artifacts go to ~/.cache/mobclf/benchmarks/<dataset> (outside git) and are reused when they exist and verify, and
pre-training resumes from its last checkpoint, so an interrupted run continues where it stopped. Results:
benchmarks/results/<dataset>-tinybert.{json,md}.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
from mobclf.stages import (DATA_PREPARE, DISTILL_TINYBERT, DISTILL_TOKEN_STUDENTS, PRETRAIN, TRAIN_TEACHER,
                           FitConfig, KnowledgeDistillation, PrepareConfig, PretrainConfig, TeacherConfig,
                           TextCnnDistillConfig, TinyBertDistillConfig)
from mobclf.text import load_tokenizer
from mobclf.train.metrics import agreement

PREDICTION = {"soft_kd": 1.0, "hard_bce": 1.0}
ABLATION = {  # name → losses; the intermediate losses train first on their own (TinyBERT's two stages)
    "tinybert4-all": {**PREDICTION, "embedding_mse": 1.0, "hidden_mse": 1.0, "attention_mse": 1.0},
    "tinybert4-pred": PREDICTION,
    "tinybert4-pred-hidden": {**PREDICTION, "embedding_mse": 1.0, "hidden_mse": 1.0},
    "tinybert4-pred-attn": {**PREDICTION, "attention_mse": 1.0},
}


@dataclass
class Setting:
    """Where a data set's files are and the geometry/length/epochs used for it."""

    files: dict[str, str]
    unlabeled: list[str]
    tokenizer: str
    pretrain_max_length: int
    teacher_name: str
    teacher: TeacherConfig
    teacher_epochs: int
    pretrain_epochs: int
    vectors: str | None = None
    vocab_size: int | None = None
    student_epochs: int = 6


TEACHER_6x512 = dict(layers=6, hidden=512, heads=8, intermediate=2048)
BERT_BASE = dict(layers=12, hidden=768, heads=12)
SETTINGS = {
    "thucnews": Setting(
        files={"train": "thucnews/train.jsonl", "val": "thucnews/val.jsonl", "test": "thucnews/test.jsonl"},
        unlabeled=["tnews_fewclue/unlabeled.jsonl"], tokenizer="char", pretrain_max_length=64,
        teacher_name="teacher-bert-base", teacher=TeacherConfig(**BERT_BASE, max_length=32), teacher_epochs=5,
        pretrain_epochs=3,
        vectors="char_embeddings_tencent"),
    "reuters": Setting(
        files={"train": "reuters21578_modapte/train.jsonl", "test": "reuters21578_modapte/test.jsonl"},
        unlabeled=[], tokenizer="wordpiece", vocab_size=16000, pretrain_max_length=64,
        teacher_name="teacher-6x512-scratch",
        teacher=TeacherConfig(**TEACHER_6x512, tokenizer="wordpiece", vocab_size=16000, max_length=64),
        teacher_epochs=6, pretrain_epochs=5),
}


@click.command()
@click.option("--dataset", "name", type=click.Choice(sorted(SETTINGS)), required=True)
@click.option("--data-root", default=DATA_ROOT, type=click.Path(path_type=Path), show_default=True)
@click.option("--work", type=click.Path(path_type=Path), help="[default: ~/.cache/mobclf/benchmarks/<dataset>]")
@click.option("--results", default=Path(__file__).parent / "results", type=click.Path(path_type=Path),
              show_default=True)
@click.option("--pretraining", is_flag=True, help="Add the 6 × 512 teachers with and without MLM pre-training.")
def main(name: str, data_root: Path, work: Path | None, results: Path, pretraining: bool) -> None:
    setting, work = SETTINGS[name], work or WORK_ROOT / name
    files = {split: data_root / path for split, path in setting.files.items()}
    data_artifact, _ = reuse_or_run(work / "dataset", "dataset",
                                    lambda: DATA_PREPARE.call(PrepareConfig(), files, work / "dataset"))
    dataset = load_dataset(data_artifact.path)
    teacher_dir = work / setting.teacher_name
    teacher_config = replace(setting.teacher, fit=FitConfig(epochs=setting.teacher_epochs, batch_size=32, lr=1e-4,
                                                            patience=2))
    teacher, teacher_seconds = reuse_or_run(teacher_dir, "teacher", lambda: TRAIN_TEACHER.call(
        teacher_config, {"data": data_artifact.path}, teacher_dir))
    teachers = {setting.teacher_name: (teacher, teacher_seconds)}

    students = {}
    for student_name, losses in ABLATION.items():
        config = TinyBertDistillConfig(
            kd=KnowledgeDistillation(losses=losses, temperature=2.0, intermediate_epochs=2 if len(losses) > 2 else 0),
            fit=FitConfig(epochs=setting.student_epochs, batch_size=32, lr=3e-4, patience=2))
        students[student_name] = reuse_or_run(work / student_name, "student", lambda: DISTILL_TINYBERT.call(
            config, {"teacher": teacher.path, "data": data_artifact.path}, work / student_name))
    textcnn = TextCnnDistillConfig(kd=KnowledgeDistillation(losses=PREDICTION), tokenizer=setting.tokenizer,
                                   vectors=data_root / setting.vectors if setting.vectors else None,
                                   fit=FitConfig(epochs=20, batch_size=64, lr=1e-3, patience=3))
    students["textcnn-kd"] = reuse_or_run(
        work / "textcnn-kd", "student", lambda: DISTILL_TOKEN_STUDENTS["textcnn"].call(
            textcnn, {"teacher": teacher.path, "data": data_artifact.path}, work / "textcnn-kd"))
    pretrained = pretraining_comparison(setting, work, data_artifact, data_root, teachers) if pretraining else None

    def test_predictions(artifact):
        return teacher_predictions(artifact, load_classifier(artifact), load_tokenizer(artifact.file("tokenizer")),
                                   dataset.texts("test"), single_label=not dataset.multi_label)

    teacher_test = test_predictions(teacher)
    rows = [artifact_row(key, artifact, seconds, agreement(test_predictions(artifact), teacher_test))
            for key, (artifact, seconds) in teachers.items()]
    rows += [artifact_row(key, artifact, seconds) for key, (artifact, seconds) in students.items()]
    rows += tfidf_rows(dataset, teacher_test)
    report = {"dataset": name, "split": "test", "baseline": setting.teacher_name, "machine": machine(), "rows": rows}
    if pretrained is not None:
        report["pretraining"] = {key: pretrained.manifest[key] for key in ("metrics", "masking", "training")}
    click.echo(write_report(results, f"{name}-tinybert", f"{name}: teacher → TinyBERT-4 and TextCNN students "
                                                          "(test split)", report))


def pretraining_comparison(setting: Setting, work: Path, data_artifact, data_root: Path, teachers: dict):
    """MLM-pre-train a 6 × 512 BERT, fine-tune it, and fine-tune the same geometry from scratch; both teachers are
    added to ``teachers``. Returns the pretrain artifact."""
    mlm = PretrainConfig(tokenizer=setting.tokenizer, vocab_size=setting.vocab_size,
                         max_length=setting.pretrain_max_length, **TEACHER_6x512,
                         fit=FitConfig(epochs=setting.pretrain_epochs, batch_size=32, lr=5e-4, patience=1))
    pretrained, _ = reuse_or_run(work / "pretrain-6x512", "pretrained", lambda: PRETRAIN.call(
        mlm, {"corpus": [data_root / path for path in setting.unlabeled], "data": data_artifact.path},
        work / "pretrain-6x512"))
    fine_tune = replace(setting.teacher, **TEACHER_6x512,
                        fit=FitConfig(epochs=setting.teacher_epochs, batch_size=32, lr=1e-4, patience=2))
    for key, init in (("teacher-6x512-mlm", pretrained.path), ("teacher-6x512-scratch", None)):
        if key not in teachers:  # on Reuters the scratch 6 × 512 is the main teacher
            teachers[key] = reuse_or_run(work / key, "teacher", lambda: TRAIN_TEACHER.call(
                fine_tune, {"data": data_artifact.path, "init": init}, work / key))
    return pretrained


if __name__ == "__main__":
    main()
