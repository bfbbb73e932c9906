"""Early exit: a BERT (or TinyBERT) with a classifier after every layer, whose forward stops at the first layer sure
enough of its answer — DeeBERT (Xin et al. 2020, "DeeBERT: Dynamic Early Exiting for Accelerating BERT
Inference"): its off-ramps, trained with the encoder frozen; and FastBERT (Liu et al. 2020, "FastBERT: a
Self-distilling BERT with Adaptive Inference Time"): the off-ramps learn from the last layer's predictions.

``config``: ``base`` (the architecture dict of the BERT it extends, whose weights stay as they were), ``threshold``
(the confidence an exit needs to answer, calibrated on val by ``mobclf early-exit``), ``thresholds`` (the base's
per-label thresholds) and ``single_label``. The last exit is the base's own head, so with a threshold above every
confidence the model answers exactly as the base does.

Confidence is the cascade's (``mobclf.cascade``): how far an exit's probabilities are from changing its decision
(:func:`decision_margin`), so one threshold reads the same way at every depth and for both kinds of data.
"""

from __future__ import annotations

import torch
from torch import nn

from mobclf.models.bert import BertClassifier, TinyBertClassifier, additive_mask

BASES = {"bert": BertClassifier, "tinybert": TinyBertClassifier}


def decision_margin(probs: torch.Tensor, thresholds: torch.Tensor, single_label: bool) -> torch.Tensor:
    """How far each row of probabilities ``[N, L]`` is from changing the decision: the margin between the two most
    probable labels (single-label), or the least distance of a label from its threshold (multi-label); ``[N]``."""
    if single_label:
        if probs.shape[1] < 2:
            return torch.ones(len(probs), dtype=probs.dtype)
        top_two = probs.topk(2, dim=1).values
        return top_two[:, 0] - top_two[:, 1]
    return (probs - thresholds[None, :]).abs().min(dim=1).values


def confidence_kind(single_label: bool) -> str:
    """The name bundles and manifests give ``decision_margin``'s rule for a kind of data."""
    return "margin" if single_label else "threshold_distance"


def exit_confidence(logits: torch.Tensor, thresholds: torch.Tensor, single_label: bool) -> torch.Tensor:
    """An exit's confidence ``[N]`` from its logits ``[N, L]``: float32 probabilities, the margin in float64 (as
    calibration computes it from the probabilities it stores)."""
    return decision_margin(torch.sigmoid(logits.float()).double(), torch.as_tensor(thresholds).double(), single_label)


class ExitHead(nn.Module):
    """One off-ramp (DeeBERT): a pooler (dense + tanh on the layer's [CLS] state) and a linear classifier."""

    def __init__(self, hidden: int, labels: int, dropout: float):
        super().__init__()
        self.pool = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.classify = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, labels))

    def forward(self, cls_state: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool(cls_state))


class EarlyExitBert(nn.Module):
    """A BERT classifier (``base``) with an exit after each of its layers but the last (see the module doc)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.base = BASES[config["base"]["name"]](config["base"]["config"])
        bert = self.base.bert.config
        self.exits = nn.ModuleList(ExitHead(bert.hidden_size, config["base"]["config"]["num_labels"],
                                            config["base"]["config"].get("dropout", 0.1))
                                   for _ in range(bert.num_hidden_layers - 1))
        self.register_buffer("label_thresholds", torch.tensor(config["thresholds"], dtype=torch.float32),
                             persistent=False)

    @property
    def depth(self) -> int:
        return len(self.exits) + 1

    def _embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding output and the additive attention mask the encoder layers take."""
        states = self.base.bert.embeddings(input_ids=input_ids)
        return states, additive_mask(attention_mask, states.dtype)

    def exit_head(self, number: int, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The logits of the exit after layer ``number`` (1-based) from that layer's states."""
        return self.exits[number - 1](states[:, 0]) if number < self.depth else self.base.classify(states,
                                                                                                  attention_mask)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All the exits read: the [CLS] state after each layer but the last ``[B, depth - 1, hidden]`` and the
        base's logits ``[B, labels]``."""
        states, additive = self._embed(input_ids, attention_mask)
        cls_states = []
        for number, layer in enumerate(self.base.bert.encoder.layer, start=1):
            states = layer(states, additive)
            if number < self.depth:
                cls_states.append(states[:, 0])
        return torch.stack(cls_states, dim=1), self.base.classify(states, attention_mask)

    def exit_logits(self, cls_states: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
        """Every exit's logits ``[depth, B, labels]`` from ``features``, the base's head last."""
        return torch.stack([*(head(cls_states[:, k]) for k, head in enumerate(self.exits)), base_logits])

    def confidence(self, logits: torch.Tensor) -> torch.Tensor:
        return exit_confidence(logits, self.label_thresholds, self.config["single_label"])

    def answer(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each text's logits ``[B, labels]`` from its first exit whose confidence reaches the threshold (the last
        exit otherwise), and that exit's layer number ``[B]``; a text that has left runs no further layers."""
        states, additive = self._embed(input_ids, attention_mask)
        logits = torch.empty(len(input_ids), self.config["base"]["config"]["num_labels"], device=states.device)
        exit_layer = torch.full((len(input_ids),), self.depth, dtype=torch.long, device=states.device)
        running = torch.arange(len(input_ids), device=states.device)  # the rows still in the encoder
        for number, layer in enumerate(self.base.bert.encoder.layer, start=1):
            states = layer(states, additive)
            ours = self.exit_head(number, states, attention_mask[running]).to(logits.dtype)
            sure = self.confidence(ours) >= self.config["threshold"] if number < self.depth else \
                torch.ones(len(running), dtype=torch.bool, device=states.device)
            logits[running[sure]], exit_layer[running[sure]] = ours[sure], number
            running, states, additive = running[~sure], states[~sure], additive[~sure]
            if not len(running):
                break
        return logits, exit_layer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.answer(input_ids, attention_mask)[0]
