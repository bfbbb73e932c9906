"""``mobclf distill``: teach a small TextCNN student to agree with a BERT teacher.

A run is declared as data (``DistillPlan``): which registered losses, with which weights, and which teacher layers
they read. ``hint_mse`` regresses the student's per-token conv features, through a learned linear projection, onto
the teacher's hidden states of ``hint_layer`` (FitNets); ``attention_transfer`` matches the student's activation
attention to the teacher's [CLS] attention of ``attention_layers``. Teacher and student tokens are aligned by their
character spans (characters summed into words). With ``hint_epochs`` the FitNets two-stage schedule runs: first the
student's lower layers learn the hint alone, then everything trains on the full loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobclf.artifacts import Artifact, check_output_dir, load_artifact
from mobclf.console import console
from mobclf.data.dataset import load_dataset, read_texts
from mobclf.distill.alignment import align_attention, align_hidden, batch_alignment
from mobclf.distill.losses import get_loss
from mobclf.distill.teacher_cache import TeacherOutputs, teacher_outputs, teacher_predictions
from mobclf.errors import UserError
from mobclf.models import count_parameters, load_classifier, resolve_device
from mobclf.models.textcnn import TextCNN, load_pretrained_vectors
from mobclf.text import build_tokenizer, load_tokenizer
from mobclf.train.batching import EncodedTexts, encode_texts
from mobclf.train.classifier import tune_and_score, val_micro_f1, write_classifier
from mobclf.train.loop import FitConfig, fit
from mobclf.train.losses import label_pos_weights
from mobclf.train.metrics import agreement


@dataclass
class DistillPlan:
    """Which losses, their weights, and the teacher layers they read (TextBrewer-style intermediate matches)."""

    losses: dict[str, float] = field(default_factory=lambda: {"soft_kd": 1.0, "hard_bce": 1.0})
    temperature: float = 2.0
    hint_layer: int | None = None  # teacher hidden_states index; None → the teacher's middle layer
    attention_layers: list[int] = field(default_factory=list)  # empty → the teacher's last layer
    hint_epochs: int = 0  # FitNets stage 1: epochs of hint-only training before the full loss


@dataclass
class StudentConfig:
    tokenizer: str = "char"
    vocab_size: int | None = None
    min_freq: int = 1
    max_length: int | None = None  # None → the teacher's
    embedding_dim: int = 128
    kernel_sizes: list[int] = field(default_factory=lambda: [2, 3, 4])
    num_filters: int = 128
    dropout: float = 0.5
    vectors: Path | None = None  # directory with vocab.txt + vectors.npy (pretrained embeddings)


def _aligned_targets(outputs: TeacherOutputs, student: EncodedTexts, chunk: int = 512) -> tuple:
    """Teacher attention and hidden states moved onto student token positions, for every text."""
    teacher_side = outputs.cls_attention if outputs.cls_attention is not None else outputs.hidden
    width_s, width_t = student.input_ids.shape[1], teacher_side.shape[1]
    attention, hidden = [], []
    for start in range(0, len(student), chunk):
        stop = min(start + chunk, len(student))
        matrix = batch_alignment(student.offsets[start:stop], outputs.offsets[start:stop], width_s, width_t)
        if outputs.cls_attention is not None:
            attention.append(align_attention(outputs.cls_attention[start:stop], matrix))
        if outputs.hidden is not None:
            hidden.append(align_hidden(outputs.hidden[start:stop].float(), matrix).half())
    return (torch.cat(attention) if attention else None), (torch.cat(hidden) if hidden else None)


def distill(teacher_dir: Path, data: Path, out: Path, plan: DistillPlan, student_config: StudentConfig,
            fit_config: FitConfig, unlabeled: Path | None = None, threshold_objective: str = "micro",
            pos_weight_scheme: str = "sqrt_inverse", device: str = "auto", force: bool = False) -> Artifact:
    """Distil a teacher artifact into a TextCNN ``student`` artifact at ``out``."""
    check_output_dir(out, force)
    losses = {name: (get_loss(name), weight) for name, weight in plan.losses.items() if weight}
    if not losses:
        raise UserError("no distillation loss has a non-zero weight; give e.g. --loss soft_kd=1")
    teacher_artifact = load_artifact(teacher_dir, kind="teacher")
    dataset = load_dataset(data)
    if teacher_artifact.labels != dataset.labels:
        raise UserError("the teacher was trained on other labels than this dataset's; distil on the teacher's data",
                        path=data)
    teacher = load_classifier(teacher_artifact)
    teacher_tokenizer = load_tokenizer(teacher_artifact.file("tokenizer"))
    layers = teacher.bert.config.num_hidden_layers
    hint_layer = (plan.hint_layer if plan.hint_layer is not None else layers // 2) if "hint_mse" in losses else None
    attention_layers = (plan.attention_layers or [layers]) if "attention_transfer" in losses else []
    run_device = resolve_device(device)
    torch.manual_seed(fit_config.seed)

    extra_texts = read_texts(unlabeled) if unlabeled else []
    texts = dataset.texts("train") + extra_texts
    has_label = torch.tensor([True] * len(dataset.texts("train")) + [False] * len(extra_texts))
    targets = torch.from_numpy(np.concatenate([dataset.targets("train"),
                                               np.zeros((len(extra_texts), len(dataset.labels)), np.float32)]))
    outputs = teacher_outputs(teacher_artifact, teacher, teacher_tokenizer, texts, hint_layer=hint_layer,
                              attention_layers=attention_layers, device=run_device)

    tokenizer = build_tokenizer(student_config.tokenizer, texts,
                                max_length=student_config.max_length or teacher_tokenizer.max_length,
                                add_special_tokens=False, vocab_size=student_config.vocab_size,
                                min_freq=student_config.min_freq)
    encoded = encode_texts(tokenizer, texts)
    teacher_attention, teacher_hidden = _aligned_targets(outputs, encoded) if (hint_layer is not None
                                                                               or attention_layers) else (None, None)
    model_config = {"vocab_size": len(tokenizer.vocab), "embedding_dim": student_config.embedding_dim,
                    "kernel_sizes": list(student_config.kernel_sizes), "num_filters": student_config.num_filters,
                    "dropout": student_config.dropout, "num_labels": len(dataset.labels)}
    vectors_coverage = None
    if student_config.vectors:
        matrix, vectors_coverage = load_pretrained_vectors(tokenizer.vocab, Path(student_config.vectors) / "vocab.txt",
                                                           Path(student_config.vectors) / "vectors.npy")
        model_config["embedding_dim"] = matrix.shape[1]
    student = TextCNN(model_config)
    if student_config.vectors:
        student.embedding.weight.data.copy_(matrix)
        console.log(f"student: {vectors_coverage:.1%} of the vocabulary initialised from {student_config.vectors}")
    projection = nn.Linear(student.feature_dim, teacher.config["bert"]["hidden_size"]) if hint_layer is not None \
        else nn.Identity()
    trainable = nn.ModuleDict({"student": student, "projection": projection}).to(run_device)
    console.log(f"student: {count_parameters(student):,} parameters, vocab {len(tokenizer.vocab):,}, "
                f"losses {', '.join(f'{n}×{w}' for n, (_, w) in losses.items())}")

    pos_weight = label_pos_weights(dataset.label_counts("train"), len(dataset.texts("train")),
                                   pos_weight_scheme).to(run_device)
    teacher_logits = outputs.logits

    def batch_loss(index: torch.Tensor, only: tuple[str, ...] | None = None) -> torch.Tensor:
        chosen = {name: term for name, term in losses.items() if only is None or name in only}
        batch = {k: v.to(run_device) for k, v in encoded.batch(index).items()}
        width, mask = batch["input_ids"].shape[1], batch["attention_mask"]
        features = student.features(batch["input_ids"])
        logits = student.classify(features, mask) if {"soft_kd", "hard_bce"} & set(chosen) else None
        inputs = {
            "soft_kd": lambda: dict(student_logits=logits, teacher_logits=teacher_logits[index].to(run_device),
                                    temperature=plan.temperature, multi_label=dataset.multi_label),
            "hard_bce": lambda: dict(logits=logits, targets=targets[index].to(run_device), pos_weight=pos_weight,
                                     example_mask=has_label[index].to(run_device)),
            "hint_mse": lambda: dict(projected_student=projection(features),
                                     teacher_hidden=teacher_hidden[index, :width].float().to(run_device), mask=mask),
            "attention_transfer": lambda: dict(student_features=features,
                                               teacher_attention=teacher_attention[index, :width].to(run_device),
                                               mask=mask),
        }
        return sum(weight * fn(**inputs[name]()) for name, (fn, weight) in chosen.items())

    schedule = []
    if plan.hint_epochs and hint_layer is not None:
        hint_config = FitConfig(**{**asdict(fit_config), "epochs": plan.hint_epochs})
        lower = nn.ModuleDict({"embedding": student.embedding, "convs": student.convs, "projection": projection})
        stage = fit(lower, len(texts), lambda index: batch_loss(index, only=("hint_mse",)), None, hint_config,
                    "FitNets hint stage")
        schedule.append({"stage": "hint", "epochs": stage.best_epoch, "seconds": stage.seconds})
    result = fit(trainable, len(texts), batch_loss, lambda: val_micro_f1(student, tokenizer, dataset, run_device),
                 fit_config, "student")
    student.cpu()
    thresholds, info, metrics, predictions = tune_and_score(student, tokenizer, dataset, threshold_objective, "cpu")
    metrics["agreement_with_teacher"] = _agreement_with_teacher(predictions, teacher, teacher_artifact,
                                                                teacher_tokenizer, dataset, run_device)
    console.log(f"student: val micro-F1 {metrics['val']['micro_f1']:.4f}, agreement with teacher on val "
                f"{metrics['agreement_with_teacher']['val']:.4f}")
    extra = {"distillation": {"plan": {**asdict(plan), "hint_layer": hint_layer, "attention_layers": attention_layers},
                              "teacher": {"path": str(teacher_artifact.path), "sha256": teacher_artifact.sha256,
                                          "micro_f1": {split: scores["micro_f1"] for split, scores
                                                       in teacher_artifact.manifest["metrics"].items()}},
                              "unlabeled_texts": len(extra_texts), "stages": schedule,
                              "vectors": str(student_config.vectors) if student_config.vectors else None,
                              "vectors_coverage": vectors_coverage}}
    return write_classifier(out, "student", student, tokenizer, dataset, [teacher_artifact, dataset.artifact],
                            thresholds, info, metrics, fit_config, result, extra, force)


def _agreement_with_teacher(student_predictions: dict, teacher, teacher_artifact, teacher_tokenizer, dataset,
                            device) -> dict:
    """Per split, the fraction of texts on which student and teacher predict the same label set."""
    return {split: agreement(ours, teacher_predictions(teacher_artifact, teacher, teacher_tokenizer,
                                                       dataset.texts(split), not dataset.multi_label, device))
            for split, ours in student_predictions.items()}
