"""What a student recipe hands the distillation driver (``distill.py``): the student, its tokens of the transfer
texts, its learned projections, and one function that turns a batch into the inputs of each intermediate loss.

``PREDICTION_LOSSES`` read only the student's logits and are wired by the driver for every student; each recipe
declares the intermediate losses it knows (TextCNN: FitNets hints, attention transfer; TinyBERT: embedding, hidden
and attention MSE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mobclf.text.base import Tokenizer
from mobclf.train.batching import EncodedTexts

PREDICTION_LOSSES = ("soft_kd", "hard_bce")

# (rows of the transfer texts or None for general-distillation texts, batch on the device, loss names)
#   → (student logits or None when no prediction loss is asked for, {loss name: keyword arguments})
Forward = Callable[[torch.Tensor | None, dict[str, torch.Tensor], set[str]], tuple[torch.Tensor | None, dict]]


@dataclass
class PreparedStudent:
    model: nn.Module
    tokenizer: Tokenizer
    encoded: EncodedTexts  # the transfer texts (train + unlabelled) in the student's tokens
    teacher_logits: torch.Tensor  # [N, labels] for the same texts
    projections: nn.Module  # learned student → teacher width maps, trained alongside the student
    intermediate_module: nn.Module  # what the intermediate-only stage trains
    forward: Forward
    prediction_only_after_intermediate: bool  # TinyBERT's second stage drops the intermediate losses
    plan_details: dict = field(default_factory=dict)  # resolved layers etc., recorded in the manifest
    parents: list = field(default_factory=list)  # extra lineage (an init checkpoint)
