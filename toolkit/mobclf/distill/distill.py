"""``mobclf distill``: teach a small student (TextCNN, DPCNN, FastText, TextRNN, BiLSTM-attention or TinyBERT) to
agree with a BERT teacher.

A run is declared as data (``DistillPlan``): which registered losses, with which weights, and which teacher layers
they read. From it the student recipe (``token_student`` / ``tinybert_student``) declares its intermediate matches
(``losses.Match``: which student output meets which teacher output, through which projection, with which loss), the
driver adds the prediction matches, and every batch's loss is ``losses.total_loss`` over them; the resolved matches
are recorded in the manifest.
Training runs in up to three stages through the one loop (``train.loop.fit``):

1. general distillation (TinyBERT, ``general_epochs`` over ``general_texts``): intermediate losses only, on
   unlabelled text;
2. intermediate stage (``intermediate_epochs``): intermediate losses only on the transfer texts — FitNets' hint
   stage for the token students, TinyBERT's intermediate-layer distillation;
3. the main stage with early stopping on val micro-F1: every loss for a token student; for TinyBERT the prediction
   losses
   only when stage 2 ran (TinyBERT's prediction-layer distillation), every loss otherwise.

Transfer texts are the training texts plus optional unlabelled ones, which get the teacher's soft labels only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobclf.artifacts import Artifact, load_artifact
from mobclf.console import console
from mobclf.data.dataset import load_dataset, read_texts
from mobclf.distill.losses import PREDICTION_LOSSES, Batch, Match, get_loss, prediction_matches, total_loss
from mobclf.distill.student import PreparedStudent
from mobclf.distill.teacher_cache import agreement_with_teacher
from mobclf.distill.teachers import soft_targets, teacher_weights
from mobclf.distill.token_student import INTERMEDIATE_LOSSES as TOKEN_STUDENT_LOSSES
from mobclf.distill.token_student import prepare_token_student
from mobclf.distill.tinybert_student import INTERMEDIATE_LOSSES as TINYBERT_LOSSES
from mobclf.distill.tinybert_student import TinyBertConfig, prepare_tinybert
from mobclf.errors import UserError
from mobclf.models import load_classifier
from mobclf.models.bert import BertClassifier
from mobclf.text import load_tokenizer
from mobclf.train.batching import TokenizedTexts
from mobclf.train.classifier import tune_and_score, val_micro_f1, write_classifier
from mobclf.stages import TinyBertDistillConfig, TokenStudentDistillConfig
from mobclf.train import distributed
from mobclf.train.loop import fit
from mobclf.train.state import open_state
from mobclf.train.losses import label_pos_weights



@dataclass
class DistillPlan:
    """Which losses, their weights, and the teacher layers they read (the student recipe turns it into matches)."""

    losses: dict[str, float] = field(default_factory=lambda: {"soft_kd": 1.0, "hard_bce": 1.0})
    temperature: float = 2.0
    hint_layer: int | None = None  # token students: teacher hidden_states index; None → the teacher's middle layer
    attention_layers: list[int] = field(default_factory=list)  # token students: empty → the teacher's last layer
    layer_map: str = "uniform"  # TinyBERT: see distill.layer_map
    intermediate_epochs: int = 0  # stage 2: intermediate losses only, before the main stage
    general_epochs: int = 0  # stage 1 (TinyBERT): intermediate losses on the general texts


def _check_losses(plan: DistillPlan, student: str, known: tuple[str, ...]) -> dict[str, float]:
    weights = {name: weight for name, weight in plan.losses.items() if weight}
    for name in weights:
        get_loss(name)  # unknown names: a UserError listing the registry
        if name not in PREDICTION_LOSSES + known:
            raise UserError(f"loss {name!r} does not apply to a {student} student; use "
                            f"{', '.join(PREDICTION_LOSSES + known)}")
    if not set(weights) & set(PREDICTION_LOSSES):
        raise UserError("a student needs soft_kd or hard_bce with a non-zero weight to learn its outputs")
    return weights


def _loss_names(matches: list[Match]) -> list[str]:
    return sorted({match.loss for match in matches})


def run_token_student(config: TokenStudentDistillConfig, *, teacher: Path, data: Path, out: Path,
                      also_teacher: tuple[Path, ...] = (), unlabeled: Path | None = None,
                      force: bool = False) -> Artifact:
    """Distil a teacher artifact into a ``student`` artifact of ``config.architecture`` at ``out``."""
    plan = DistillPlan(losses=dict(config.kd.losses), temperature=config.kd.temperature,
                       intermediate_epochs=config.kd.intermediate_epochs, hint_layer=config.hint_layer,
                       attention_layers=list(config.attention_layers))
    return distill(teacher, data, out, plan, config, config, also_teachers=also_teacher, unlabeled=unlabeled,
                   force=force)


def run_tinybert(config: TinyBertDistillConfig, *, teacher: Path, data: Path, out: Path,
                 also_teacher: tuple[Path, ...] = (), unlabeled: Path | None = None,
                 general_texts: Path | None = None, init: Path | None = None, force: bool = False) -> Artifact:
    """Distil a teacher artifact into a TinyBERT ``student`` artifact at ``out`` (``init``: its starting weights;
    ``general_texts``: unlabelled texts for general distillation first)."""
    plan = DistillPlan(losses=dict(config.kd.losses), temperature=config.kd.temperature,
                       intermediate_epochs=config.kd.intermediate_epochs, layer_map=config.layer_map,
                       general_epochs=config.general_epochs)
    student = TinyBertConfig(layers=config.layers, hidden=config.hidden, heads=config.heads,
                             intermediate=config.intermediate, dropout=config.dropout, init=init)
    return distill(teacher, data, out, plan, student, config, also_teachers=also_teacher, unlabeled=unlabeled,
                   general_texts=general_texts, force=force)


def _check_teacher_kind(teacher: nn.Module, artifact: Artifact, student: str, intermediate: set[str]) -> None:
    """An LLM teacher teaches through its predictions: its layers are not a BERT's (hints, attention, TinyBERT's
    layer map) and its tokenizer is not one a TinyBERT can take over. With a BERT teacher it can still join as
    ``--also-teacher``."""
    if isinstance(teacher, BertClassifier):
        return
    name = artifact.manifest["architecture"]["name"]
    if student == "tinybert":
        raise UserError(f"is a {name} teacher; a TinyBERT takes its BERT teacher's tokenizer and layers: distil it "
                        "from a BERT teacher and add this one with --also-teacher", path=artifact.path)
    if intermediate:
        raise UserError(f"is a {name} teacher, which teaches through its predictions (soft_kd, hard_bce); "
                        f"{', '.join(sorted(intermediate))} need a BERT teacher", path=artifact.path)


def distill(teacher_dir: Path, data: Path, out: Path, plan: DistillPlan,
            student_config: TokenStudentDistillConfig | TinyBertConfig,
            config: TokenStudentDistillConfig | TinyBertDistillConfig, also_teachers: tuple[Path, ...] = (),
            unlabeled: Path | None = None, general_texts: Path | None = None, force: bool = False) -> Artifact:
    """Distil a teacher artifact into a ``student`` artifact at ``out``: ``plan`` says what is learnt,
    ``student_config`` what the student is, ``config`` the training, label weighting and device;
    ``also_teachers`` (and ``config.kd.tfidf_teacher``) add soft targets (``distill/teachers.py``)."""
    fit_config, device = config.fit, config.device
    threshold_objective, pos_weight_scheme = config.classifier.threshold_objective, config.classifier.pos_weight
    distributed.claim_output(out, force)
    student_name, known, prepare = (("tinybert", TINYBERT_LOSSES, prepare_tinybert)
                                    if isinstance(student_config, TinyBertConfig) else
                                    (student_config.architecture, TOKEN_STUDENT_LOSSES, prepare_token_student))
    weights = _check_losses(plan, student_name, known)
    intermediate = set(weights) - set(PREDICTION_LOSSES)
    if (general_texts is None) != (plan.general_epochs == 0) or (general_texts and student_name != "tinybert"):
        raise UserError("general distillation needs a TinyBERT student, --general-texts and --general-epochs")
    if general_texts and not intermediate:
        raise UserError("general distillation trains the intermediate losses; add embedding_mse, hidden_mse or "
                        "attention_mse")
    teacher_artifact = load_artifact(teacher_dir, kind="teacher")
    more_teachers = [load_artifact(path, kind="teacher") for path in also_teachers]
    weights_of_teachers = teacher_weights(config.kd.teacher_weights, len(more_teachers), config.kd.tfidf_teacher)
    dataset = load_dataset(data)
    dataset.check_labels_of(teacher_artifact, *more_teachers)
    teacher = load_classifier(teacher_artifact)
    _check_teacher_kind(teacher, teacher_artifact, student_name, intermediate)
    teacher_tokenizer = load_tokenizer(teacher_artifact.file("tokenizer"))
    run_device = distributed.setup(device)
    torch.manual_seed(fit_config.seed)

    extra_texts = read_texts(unlabeled) if unlabeled else []
    labelled = len(dataset.texts("train"))
    texts = dataset.texts("train") + extra_texts  # the labelled ones first

    def gold_labels(index: torch.Tensor) -> torch.Tensor:
        """Multi-hot labels (uint8, made float by the loss) of transfer texts ``index``; zeros for unlabelled ones."""
        labels = np.zeros((len(index), len(dataset.labels)), np.uint8)
        has_label = (index < labelled).numpy()
        labels[has_label] = dataset.targets("train", np.uint8, rows=index.numpy()[has_label])
        return torch.from_numpy(labels)
    prepared: PreparedStudent = prepare(student_config, plan, weights, teacher_artifact, teacher, teacher_tokenizer,
                                        texts, len(dataset.labels), run_device)
    targets = soft_targets(prepared.teacher_cache, teacher_artifact, more_teachers, config.kd.tfidf_teacher,
                           weights_of_teachers, dataset, texts, run_device)
    student = prepared.model
    trainable = nn.ModuleDict({"student": student, "projections": prepared.projections}).to(run_device)
    console.log(f"losses {', '.join(f'{name}×{weight}' for name, weight in weights.items())}")
    label_weights = label_pos_weights(dataset.label_counts("train"), labelled, pos_weight_scheme).to(run_device)
    matches = prediction_matches(weights, plan.temperature, dataset.multi_label) + prepared.matches
    intermediate_matches = [match for match in matches if match.loss not in PREDICTION_LOSSES]

    def batch_loss(index: torch.Tensor | None, terms: list[Match], encoded=prepared.encoded) -> torch.Tensor:
        batch = {k: v.to(run_device) for k, v in encoded.batch(index).items()}
        ours = prepared.student_outputs(batch, {match.student for match in terms})
        theirs = prepared.teacher_outputs(index, batch, {match.teacher for match in terms} - {"logits", "labels"})
        if index is not None:  # transfer texts: the teachers' soft targets and the gold labels
            theirs.update(logits=targets.logits(index).to(run_device),
                          labels=gold_labels(index).to(run_device))
        context = Batch(mask=batch["attention_mask"], labelled=None if index is None else index < labelled,
                        label_weights=label_weights)
        return total_loss(terms, ours, theirs, context, prepared.projections)

    state = open_state(out, config, fit_config.restart, teacher=teacher_artifact.sha256, data=dataset.artifact.sha256,
                       unlabeled=unlabeled, general_texts=general_texts, init=getattr(student_config, "init", None),
                       also_teachers=[artifact.sha256 for artifact in more_teachers] or None)
    stages = []
    if general_texts:
        general = TokenizedTexts(prepared.tokenizer, read_texts(general_texts))
        stage_config = replace(fit_config, epochs=plan.general_epochs)
        result = fit(prepared.intermediate_module, len(general),
                     lambda index: batch_loss(index, intermediate_matches, encoded=general), None, stage_config,
                     "general distillation", checkpoint=state.checkpoint("general"), lengths=general.lengths)
        stages.append({"stage": "general", "texts": len(general), "epochs": result.best_epoch,
                       "seconds": result.seconds})
    main_matches = matches
    if plan.intermediate_epochs and intermediate_matches:
        stage_config = replace(fit_config, epochs=plan.intermediate_epochs)
        result = fit(prepared.intermediate_module, len(texts), lambda index: batch_loss(index, intermediate_matches),
                     None, stage_config, "intermediate stage", checkpoint=state.checkpoint("intermediate"),
                     lengths=prepared.encoded.lengths)
        stages.append({"stage": "intermediate", "losses": _loss_names(intermediate_matches),
                       "epochs": result.best_epoch, "seconds": result.seconds})
        if prepared.prediction_only_after_intermediate:
            main_matches = [match for match in matches if match.loss in PREDICTION_LOSSES]
    result = fit(trainable, len(texts), lambda index: batch_loss(index, main_matches),
                 lambda: val_micro_f1(student, prepared.tokenizer, dataset, run_device), fit_config, "student",
                 checkpoint=state.checkpoint("student"), lengths=prepared.encoded.lengths)
    stages.append({"stage": "main", "losses": _loss_names(main_matches), "epochs": result.best_epoch,
                   "seconds": result.seconds})
    student.cpu()
    thresholds, info, metrics, predictions = tune_and_score(student, prepared.tokenizer, dataset, threshold_objective,
                                                            "cpu")
    metrics["agreement_with_teacher"] = agreement_with_teacher(predictions, teacher_artifact, teacher,
                                                               teacher_tokenizer, dataset, run_device)
    console.log(f"student: val micro-F1 {metrics['val']['micro_f1']:.4f}"
                + (" (per-label thresholds tuned on val)" if dataset.multi_label else "")
                + f", agreement with teacher on val {metrics['agreement_with_teacher']['val']:.4f}")
    extra = {"distillation": {"student": student_name, "plan": {**asdict(plan), **prepared.plan_details,
                                                                      "matches": [asdict(m) for m in matches]},
                              "teacher": {"path": str(teacher_artifact.path.resolve()),
                                          "sha256": teacher_artifact.sha256,
                                          "micro_f1": {split: scores["micro_f1"] for split, scores
                                                       in teacher_artifact.manifest["metrics"].items()}},
                              **({"teachers": targets.records} if len(targets.records) > 1 else {}),
                              "unlabeled_texts": len(extra_texts), "stages": stages}}
    artifact = write_classifier(out, "student", student, prepared.tokenizer, dataset,
                                [teacher_artifact, *more_teachers, dataset.artifact, *prepared.parents], thresholds,
                                info, metrics,
                                fit_config, result, extra, force)
    state.finish()
    return artifact

