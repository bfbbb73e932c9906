"""Recurrent students: TextRNN (a bidirectional LSTM or GRU, pooled by its last states or by the mean; the RNN
baseline of the Chinese BERT text-classification studies) and the CNN-BiLSTM-attention hybrid (an optional
convolution, a BiLSTM and additive attention pooling, Yang et al. 2016, "Hierarchical Attention Networks for
Document Classification"; the rock-news multi-label study's model).

Training runs ``nn.LSTM`` / ``nn.GRU`` on packed sequences (cuDNN on a GPU). torch.export cannot capture that
recurrence for a length it does not know (it unrolls the loop), and XNNPACK delegates no recurrent operator, so
the exported program runs the same weights as a loop unrolled over the tokenizer's max length, each step's update
kept only on real tokens: its linears and activations are delegated, and runtimes pad every text to that length.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mobclf.errors import UserError
from mobclf.models.textcnn import ConvFeatures
from mobclf.models.token_student import TokenStudent, masked_mean, real_tokens

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def _gates(stacked: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``count`` equal slices of the last dim (slices, which XNNPACK runs; ``chunk`` would not be delegated)."""
    width = stacked.shape[-1] // count
    return [stacked[..., i * width:(i + 1) * width] for i in range(count)]


def _lstm_step(projected: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], w_hh: torch.Tensor,
               b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step in ``nn.LSTM``'s gate order (input, forget, cell, output); ``projected`` = W_ih x + b_ih."""
    h, c = state
    i, f, g, o = _gates(projected + F.linear(h, w_hh, b_hh), 4)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_step(projected: torch.Tensor, state: tuple[torch.Tensor], w_hh: torch.Tensor, b_hh: torch.Tensor
              ) -> tuple[torch.Tensor]:
    """One GRU step in ``nn.GRU``'s gate order (reset, update, new): ``h' = n + z (h - n)``."""
    (h,) = state
    x_r, x_z, x_n = _gates(projected, 3)
    h_r, h_z, h_n = _gates(F.linear(h, w_hh, b_hh), 3)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (n + z * (h - n),)


class BiRecurrence(nn.Module):
    """A one-layer bidirectional LSTM or GRU over a right-padded batch: [B, L, D] → [B, L, 2H], zero on padding,
    the backward direction starting at each text's last real token."""

    def __init__(self, cell: str, input_size: int, hidden: int):
        super().__init__()
        if cell not in CELLS:
            raise UserError(f"unknown recurrent cell {cell!r}; use {' or '.join(CELLS)}")
        self.cell = cell
        self.rnn = CELLS[cell](input_size, hidden, batch_first=True, bidirectional=True)

    def forward(self, sequence: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return self.unrolled(sequence, attention_mask)
        lengths = attention_mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(sequence, lengths, batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=sequence.shape[1])
        return states * real_tokens(attention_mask, states)

    def unrolled(self, sequence: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The same recurrence as a Python loop over the positions: what torch.export captures. Every step is
        slices, linears and elementwise operators on [B, 1, ·] tensors, so XNNPACK takes the whole loop as one
        part; a padded position keeps the state (``old + keep · (new - old)``) and outputs zeros."""
        step = _lstm_step if self.cell == "lstm" else _gru_step
        keep = real_tokens(attention_mask, sequence)
        length, hidden = sequence.shape[1], self.rnn.hidden_size
        directions = []
        for suffix, order in (("", range(length)), ("_reverse", range(length - 1, -1, -1))):
            weights = [getattr(self.rnn, f"{name}_l0{suffix}") for name in ("weight_ih", "bias_ih", "weight_hh",
                                                                            "bias_hh")]
            projected = F.linear(sequence, weights[0], weights[1])
            state = tuple(sequence.new_zeros(sequence.shape[0], 1, hidden) for _ in range(2 if self.cell == "lstm"
                                                                                          else 1))
            outputs = [None] * length
            for t in order:
                kept = keep[:, t:t + 1]
                updated = step(projected[:, t:t + 1], state, weights[2], weights[3])
                state = tuple(old + kept * (new - old) for new, old in zip(updated, state))
                outputs[t] = state[0] * kept
            directions.append(torch.cat(outputs, dim=1))
        return torch.cat(directions, dim=-1)


def last_states(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A :class:`BiRecurrence`'s final states [B, L, 2H] → [B, 2H]: the forward direction's at the last real token
    (picked by a one-hot of that position: the mask minus the mask shifted left by one), the backward one's at the
    first."""
    last = (attention_mask - F.pad(attention_mask[:, 1:], (0, 1)))[:, None, :].to(states.dtype)
    hidden = states.shape[-1] // 2
    forward = torch.bmm(last, states[:, :, :hidden])
    return torch.cat([forward, states[:, :1, hidden:]], dim=-1).flatten(1)


class RecurrentStudent(TokenStudent):
    """The embedding and recurrence both recurrent students share; ``config``: vocab_size, embedding_dim, cell,
    hidden, max_length (the exported length), dropout, num_labels."""

    def __init__(self, config: dict, input_size: int | None = None):
        super().__init__(config)
        self.recurrence = BiRecurrence(config.get("cell", "lstm"), input_size or config["embedding_dim"],
                                       config["hidden"])
        self.classifier = nn.Linear(2 * config["hidden"], config["num_labels"])

    @property
    def feature_dim(self) -> int:
        return 2 * self.config["hidden"]

    def min_length(self) -> int:
        """The exported program's one length: the loop is unrolled over the max length, so runtimes pad every text
        to it."""
        return self.config["max_length"]


class TextRNN(RecurrentStudent):
    """Embedding → BiLSTM/BiGRU → pooling (``last``: the forward state at the last real token and the backward
    state at the first; ``mean``: the mean over real tokens) → dropout → linear."""

    def __init__(self, config: dict):
        if config["pooling"] not in ("last", "mean"):
            raise UserError(f"unknown TextRNN pooling {config['pooling']!r}; use last or mean")
        super().__init__(config)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.recurrence(self.embedding(input_ids), attention_mask)

    def classify(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = (masked_mean if self.config["pooling"] == "mean" else last_states)(features, attention_mask)
        return self.classifier(self.dropout(pooled))


class AdditiveAttention(nn.Module):
    """Additive attention pooling (Bahdanau et al. 2015; Yang et al. 2016): ``u = tanh(W h + b)``, weights =
    softmax over real tokens of ``u · v``. Kept in fp32 by INT8 quantization (its -1e4 would take the int8 range)."""

    def __init__(self, width: int, attention_dim: int):
        super().__init__()
        self.project = nn.Linear(width, attention_dim)
        self.context = nn.Linear(attention_dim, 1, bias=False)

    def weights(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L, H] → attention weights [B, L], 0 on padding."""
        keep = attention_mask.to(states.dtype)
        scores = self.context(torch.tanh(self.project(states))).flatten(1)
        return torch.softmax(scores * keep + (keep - 1) * 1e4, dim=-1)

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.weights(states, attention_mask).unsqueeze(1), states).flatten(1)


class BiLstmAttention(RecurrentStudent):
    """Embedding → optional convolution (``conv_kernel`` > 0: ``conv_filters`` filters of that width, ReLU) →
    BiLSTM → additive attention pooling → dropout → linear; ``config`` adds conv_kernel, conv_filters,
    attention_dim to the recurrent ones."""

    def __init__(self, config: dict):
        kernel = config["conv_kernel"]
        super().__init__(config, input_size=config["conv_filters"] if kernel else None)
        self.conv = ConvFeatures(config["embedding_dim"], [kernel], config["conv_filters"]) if kernel else None
        self.attention = AdditiveAttention(self.feature_dim, config["attention_dim"])

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        sequence = self.embedding(input_ids)
        return self.recurrence(self.conv(sequence) if self.conv is not None else sequence, attention_mask)

    def classify(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.attention(features, attention_mask)))

    def attention_map(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Its attention weights [B, L], which attention transfer compares with the teacher's [CLS] attention."""
        return self.attention.weights(features, attention_mask)
