"""What a student recipe hands the distillation driver (``distill.py``): the student, its tokens of the transfer
texts, its intermediate matches (declared as data, see :class:`mobclf.distill.losses.Match`), the learned
projections they name, and two functions that give a batch's named outputs of the student and of the teacher.

The prediction matches (``soft_kd``, ``hard_bce``) are the driver's, the same for every student; each recipe
declares the intermediate ones it knows (TextCNN: FitNets hint, attention transfer; TinyBERT: embedding, hidden and
attention MSE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mobclf.distill.losses import Match
from mobclf.distill.teacher_cache import TeacherOutputs
from mobclf.text.base import Tokenizer
from mobclf.train.batching import TokenizedTexts

# (batch on the device, output names) → {name: tensor}: the student's outputs, with gradients
StudentOutputs = Callable[[dict[str, torch.Tensor], set[str]], dict[str, torch.Tensor]]
# (rows of the transfer texts or None for general-distillation texts, batch on the device, output names)
#   → {name: tensor}: the teacher's intermediate outputs on the student's positions, without gradients
TeacherBatchOutputs = Callable[[torch.Tensor | None, dict[str, torch.Tensor], set[str]], dict[str, torch.Tensor]]


@dataclass
class PreparedStudent:
    model: nn.Module
    tokenizer: Tokenizer
    encoded: TokenizedTexts  # the transfer texts (train + unlabelled) in the student's tokens
    teacher_cache: TeacherOutputs  # the teacher's cached outputs (logits at least) of the same texts
    matches: list[Match]  # the intermediate terms
    projections: nn.ModuleDict  # learned student → teacher width maps named by the matches, trained with the student
    student_outputs: StudentOutputs
    teacher_outputs: TeacherBatchOutputs
    intermediate_module: nn.Module  # what the intermediate-only stage trains
    prediction_only_after_intermediate: bool  # TinyBERT's second stage drops the intermediate losses
    plan_details: dict = field(default_factory=dict)  # resolved layers etc., recorded in the manifest
    parents: list = field(default_factory=list)  # extra lineage (an init checkpoint)
