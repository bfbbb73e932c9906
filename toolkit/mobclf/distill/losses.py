"""Distillation losses with one call shape, and the terms of a run declared as data.

Every loss is ``loss(student, teacher, batch, **options) -> scalar``: one tensor the student produced, the tensor
the teacher produced for the same texts (already on the student's positions), and the :class:`Batch` (mask, which
texts have gold labels, label weights). A run is a list of :class:`Match` terms — TextBrewer's "intermediate
matches", here for the outputs too: which student output meets which teacher output, through which learned
projection, with which loss and weight. :func:`total_loss` is the only place that calls a loss.

Output names: ``logits``; ``hidden.N`` (``hidden_states[N]``: 0 the embedding output, 1..N the transformer layers);
``attention.N`` (layer N's attention scores); a token student's ``features`` (per-token, e.g. a TextCNN's
convolution feature map) and ``attention_map`` (those features, or its attention weights); the teacher's
``cls_attention`` ([CLS] attention, summed onto student tokens) and ``labels`` (the gold labels: ``hard_bce``'s
"teacher").

Token students (TextCNN, DPCNN, FastText, TextRNN, BiLSTM-attention) use ``hint_mse`` and
``attention_transfer``; TinyBERT students use TinyBERT's layer-wise losses ``embedding_mse`` and ``hidden_mse``
(the FitNets regression below, applied to the embedding output and to each mapped layer) and ``attention_mse``.
``soft_kd`` and ``hard_bce`` serve every student.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from mobclf.errors import UserError
from mobclf.train.losses import weighted_bce

PREDICTION_LOSSES = ("soft_kd", "hard_bce")


@dataclass(frozen=True)
class Batch:
    """What a loss may read of the batch besides the two outputs (every field optional for a loss that needs none)."""

    mask: torch.Tensor | None = None  # [B, L] real student-token positions
    labelled: torch.Tensor | None = None  # [B] bool: the text has gold labels (unlabelled transfer texts do not)
    label_weights: torch.Tensor | None = None  # [labels] positive weights of the gold-label loss


@dataclass(frozen=True)
class Match:
    """One loss term: ``weight · loss(projection(student_output), teacher_output, batch, **options)``."""

    loss: str
    student: str
    teacher: str
    weight: float = 1.0
    projection: str | None = None  # a key of the run's learned projections (student width → teacher width)
    options: dict = field(default_factory=dict)  # e.g. {"temperature": 2.0, "multi_label": True}


Loss = Callable[..., torch.Tensor]
LOSSES: dict[str, Loss] = {}


def register(name: str) -> Callable[[Loss], Loss]:
    """Add a loss function to :data:`LOSSES` under ``name``."""

    def add(fn: Loss) -> Loss:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = fn
        return fn

    return add


def get_loss(name: str) -> Loss:
    """The loss registered as ``name``; a :class:`UserError` listing the known names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UserError(f"unknown distillation loss {name!r}; known: {', '.join(sorted(LOSSES))}") from None


def total_loss(matches: Iterable[Match], student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
               batch: Batch, projections: nn.ModuleDict | None = None) -> torch.Tensor:
    """The weighted sum of every match's loss over the named outputs of both models."""
    terms = []
    for match in matches:
        ours = student[match.student]
        if match.projection is not None:
            ours = projections[match.projection](ours)
        terms.append(match.weight * get_loss(match.loss)(ours, teacher[match.teacher], batch, **match.options))
    return sum(terms)


def prediction_matches(weights: dict[str, float], temperature: float, multi_label: bool) -> list[Match]:
    """The output-layer terms of ``weights`` (``soft_kd`` against the teacher's logits, ``hard_bce`` against the gold
    labels); names of intermediate losses are left to the student's own matches."""
    known = {"soft_kd": Match("soft_kd", "logits", "logits", options={"temperature": temperature,
                                                                       "multi_label": multi_label}),
             "hard_bce": Match("hard_bce", "logits", "labels")}
    return [replace(known[name], weight=weight) for name, weight in weights.items() if name in known]


@register("soft_kd")
def soft_target_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    batch: Batch = Batch(),
    temperature: float = 1.0,
    multi_label: bool = True,
) -> torch.Tensor:
    """Soft-target knowledge distillation (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network").

    Multi-label: per-label BCE between ``sigmoid(s/T)`` and the target ``sigmoid(t/T)``, mean over batch and
    labels. Single-label: ``KL(softmax(t/T) || softmax(s/T))``, summed over classes and averaged over the batch.
    Both are multiplied by ``T²`` so gradient scale does not depend on ``T``. The teacher is a fixed target
    (detached). The multi-label loss is minimal, not zero, at ``s == t`` (it still contains the targets' entropy).

        >>> s = torch.tensor([[1.0, -1.0]])
        >>> soft_target_kd(s, s, multi_label=False)
        tensor(0.)
    """
    t = temperature
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if multi_label:
        loss = F.binary_cross_entropy_with_logits(student_logits / t, torch.sigmoid(teacher_logits / t))
    else:
        loss = F.kl_div(
            F.log_softmax(student_logits / t, dim=-1),
            F.log_softmax(teacher_logits / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
    return loss * t * t


@register("hard_bce")
def gold_label_bce(student_logits: torch.Tensor, gold_labels: torch.Tensor, batch: Batch = Batch()) -> torch.Tensor:
    """The ordinary supervised loss in the same call shape: :func:`mobclf.train.losses.weighted_bce` against the gold
    labels (the "teacher" of this term), weighted per label by ``batch.label_weights``, over labelled texts only.

        >>> gold_label_bce(torch.zeros(1, 1), torch.ones(1, 1))  # -log(sigmoid(0)) = ln 2
        tensor(0.6931)
    """
    return weighted_bce(student_logits, gold_labels, batch.label_weights, batch.labelled)


@register("hint_mse")
@register("hidden_mse")
@register("embedding_mse")
def fitnets_hint(projected_student: torch.Tensor, teacher_hidden: torch.Tensor, batch: Batch = Batch()
                 ) -> torch.Tensor:
    """FitNets hint loss (Romero et al., 2015, "FitNets: Hints for Thin Deep Nets").

    Registered three times: ``hint_mse`` (TextCNN features → a teacher layer), and TinyBERT's ``embedding_mse``
    and ``hidden_mse`` (Jiao et al., 2020: ``MSE(H_s W, H_t)`` on the embedding output and on each mapped layer).

    Mean squared error between the student's intermediate features after the caller's learned projection
    and the teacher's hidden state at the same positions (see :func:`mobclf.distill.alignment.align_hidden`),
    both ``[B, L, H]`` (or ``[B, H]``, e.g. pooled, without a mask). With ``batch.mask`` ``[B, L]`` the mean runs
    over real positions × features only; no real position gives 0.

        >>> fitnets_hint(torch.ones(1, 2, 2), torch.zeros(1, 2, 2), Batch(mask=torch.tensor([[1, 0]])))
        tensor(1.)
    """
    sq = (projected_student - teacher_hidden.detach().to(projected_student.dtype)) ** 2
    if batch.mask is None:
        return sq.mean()
    m = batch.mask.to(sq.dtype).unsqueeze(-1)
    return (sq * m).sum() / (m.sum() * sq.shape[-1]).clamp_min(1.0)


@register("attention_transfer")
def attention_transfer(
    student_features: torch.Tensor,
    teacher_attention: torch.Tensor,
    batch: Batch = Batch(),
    p: float = 2.0,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Activation-based attention transfer (Zagoruyko & Komodakis, 2017, "Paying More Attention to Attention").

    The student's attention map over positions is ``Q_s[b, l] = Σ_c |F[b, l, c]|^p`` for a feature map
    ``F`` ``[B, L, C]`` (e.g. a TextCNN convolution output), or the student's own attention weights when it gives
    ``[B, L]`` (a BiLSTM-attention student); ``teacher_attention`` ``[B, L]`` is given, already
    aligned to the student positions (see :func:`mobclf.distill.alignment.align_attention`). Both are zeroed
    outside ``batch.mask`` and L2-normalised over positions; the loss is the batch mean of
    ``|| Q_s/||Q_s|| − Q_t/||Q_t|| ||_2`` — the paper's distance, not squared, without its ``β/2``
    (the weight is the caller's).

        >>> f = torch.tensor([[[1.0], [0.0]]])          # Q_s = [1, 0]
        >>> attention_transfer(f, torch.tensor([[0.0, 1.0]]))  # ||[1, -1]|| = sqrt 2
        tensor(1.4142)
    """
    q_s = student_features.abs().pow(p).sum(-1) if student_features.dim() == 3 else student_features
    q_t = teacher_attention.detach().to(q_s.dtype)
    if batch.mask is not None:
        m = batch.mask.to(q_s.dtype)
        q_s, q_t = q_s * m, q_t * m
    q_s = F.normalize(q_s, dim=-1, eps=eps)
    q_t = F.normalize(q_t, dim=-1, eps=eps)
    return (q_s - q_t).norm(dim=-1).mean()


@register("attention_mse")
def attention_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor, batch: Batch = Batch()
                  ) -> torch.Tensor:
    """TinyBERT attention loss (Jiao et al., 2020, "TinyBERT: Distilling BERT for Natural Language Understanding").

    Mean squared error between student and teacher attention scores (before the softmax,
    :func:`mobclf.models.bert.attention_scores`), ``[B, heads, L, L]``. Heads are matched one to one when the
    counts agree; otherwise both sides are averaged over their heads first. With ``batch.mask`` ``[B, L]`` only pairs
    of two real tokens count (TinyBERT's code zeroes the masked scores instead, which would pull padded scores to 0).

        >>> s, t = torch.zeros(1, 2, 2, 2), torch.ones(1, 4, 2, 2)   # 2 vs 4 heads: averaged
        >>> attention_mse(s, t, Batch(mask=torch.tensor([[1, 0]])))   # one real pair, (0 - 1)²
        tensor(1.)
    """
    teacher_scores = teacher_scores.detach().to(student_scores.dtype)
    if student_scores.shape[1] != teacher_scores.shape[1]:
        student_scores, teacher_scores = student_scores.mean(1, keepdim=True), teacher_scores.mean(1, keepdim=True)
    sq = (student_scores - teacher_scores) ** 2
    if batch.mask is None:
        return sq.mean()
    m = batch.mask.to(sq.dtype)
    pairs = (m[:, :, None] * m[:, None, :])[:, None]  # [B, 1, L, L]
    return (sq * pairs).sum() / (pairs.sum() * sq.shape[1]).clamp_min(1.0)
