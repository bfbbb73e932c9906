"""What both export formats share: the classifier in an exportable form, its shortest sequence, and padding.

Exported programs take ``input_ids`` and ``attention_mask`` (int64 [B, L]) and return logits [B, labels]; the app
applies the activation and the thresholds.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mobclf.errors import UserError
from mobclf.models.bert import BertClassifier, additive_mask
from mobclf.models.early_exit import EarlyExitBert
from mobclf.models.textcnn import TextCNN


class ExportableClassifier(nn.Module):
    """``(input_ids, attention_mask) → logits`` in a form torch.export and PT2E take: BERTs get a ready additive
    4D mask (transformers 5 builds one with integer arithmetic that PT2E breaks) and eager attention."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if isinstance(model, EarlyExitBert):
            raise UserError("an early-exit model is no single forward graph: mobclf export and mobclf quantize "
                            "write it as a .pte with a method per layer or an .onnx graph that stops at the exit")
        self.model = copy.deepcopy(model).eval()
        if isinstance(self.model, BertClassifier):
            self.model.bert.set_attn_implementation("eager")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, BertClassifier):
            mask = additive_mask(attention_mask)
            states = self.model.bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
            return self.model.classify(states, attention_mask)
        return self.model(input_ids, attention_mask)


def min_length(model: nn.Module) -> int:
    """Shortest exported sequence: what a model states itself (DPCNN: enough positions after its halvings; a
    recurrent student: its one length); else above the largest conv kernel (export guards L ≠ k), and at least 4."""
    if isinstance(model, EarlyExitBert):
        model = model.base
    if hasattr(model, "min_length"):
        return model.min_length()
    kernels = model.config.get("kernel_sizes", []) if isinstance(model, TextCNN) or \
        model.config.get("head") == "cnn" else []
    return max([4, *[k + 1 for k in kernels]])


def sequence_dim(shortest: int, max_length: int):
    """The exported sequence axis: dynamic from ``shortest`` to ``max_length``, or static at ``shortest`` when no
    text is longer (a recurrent model; a DPCNN whose halvings need more positions than the tokenizer gives)."""
    return torch.export.Dim.STATIC if shortest >= max_length else torch.export.Dim("seq", min=shortest,
                                                                                   max=max_length)


def pad_to(input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a batch to ``length`` with [PAD] (id 0) and mask 0: BERT masks those positions out of attention, and
    TextCNN's pad embedding is the zero vector its convolutions pad with, and masked max-pooling skips them."""
    missing = length - input_ids.shape[1]
    if missing <= 0:
        return input_ids, attention_mask
    return (torch.nn.functional.pad(input_ids, (0, missing)), torch.nn.functional.pad(attention_mask, (0, missing)))
