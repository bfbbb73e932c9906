"""DPCNN student (Johnson & Zhang 2017, "Deep Pyramid Convolutional Neural Networks for Text Categorization").

Region embedding (a width-3 convolution over token embeddings) → two pre-activation convolutions with a shortcut →
``blocks`` times: max-pool (width 3, stride 2, halving the length) and two more convolutions with a shortcut →
max over the remaining positions → dropout → linear. Every convolution keeps the width (``num_filters``), as in the
paper; the paper repeats the blocks until one position is left, here their number is fixed so that the exported
program is one graph for every length.

Padding never changes the output: padded positions are zeroed before every convolution (the zeros its padding
would add), and never win a max; after a pooling a position is real when the centre of its window was.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mobclf.models.textcnn import MaskedMaxPool
from mobclf.models.token_student import TokenStudent, real_tokens

KERNEL = 3


class ResidualConvs(nn.Module):
    """``x + conv(relu(conv(relu(x))))``, with padded positions zeroed before each convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.first = nn.Conv1d(channels, channels, KERNEL, padding=KERNEL // 2)
        self.second = nn.Conv1d(channels, channels, KERNEL, padding=KERNEL // 2)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x`` [B, C, L], ``keep`` [B, 1, L] (1 on real positions)."""
        inner = self.first(torch.relu(x) * keep)
        return x + self.second(torch.relu(inner) * keep)


class HalvingPool(nn.Module):
    """Max-pool of width 3 and stride 2 over real positions; the mask keeps each window's centre. Written as the
    maximum of three shifted copies, then every second position: ``nn.MaxPool1d`` made torch.export fix the length.
    Kept in fp32 by INT8 quantization (its -1e4 would take the int8 range)."""

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masked = x * keep + (keep - 1) * 1e4
        before = F.pad(masked[:, :, :-1], (1, 0), value=-1e4)  # position t holds t - 1
        after = F.pad(masked[:, :, 1:], (0, 1), value=-1e4)  # position t holds t + 1
        keep = keep[:, :, ::2]
        return torch.maximum(torch.maximum(before, masked), after)[:, :, ::2] * keep, keep


class DPCNN(TokenStudent):
    """``config``: vocab_size, embedding_dim, num_filters, blocks, dropout, num_labels."""

    def __init__(self, config: dict):
        super().__init__(config)
        channels = config["num_filters"]
        self.region = nn.Conv1d(config["embedding_dim"], channels, KERNEL, padding=KERNEL // 2)
        self.stem = ResidualConvs(channels)
        self.downsample = HalvingPool()
        self.blocks = nn.ModuleList(ResidualConvs(channels) for _ in range(config["blocks"]))
        self.pool = MaskedMaxPool()
        self.classifier = nn.Linear(channels, config["num_labels"])

    @property
    def feature_dim(self) -> int:
        return self.config["num_filters"]

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The region embedding [B, L, C]: the last layer that still has one position per token."""
        return self.region(self.embedding(input_ids).transpose(1, 2)).transpose(1, 2)

    def classify(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = real_tokens(attention_mask, features).transpose(1, 2)
        x = self.stem(features.transpose(1, 2) * keep, keep)
        for block in self.blocks:
            x, keep = self.downsample(x, keep)
            x = block(x, keep)
        return self.classifier(self.dropout(self.pool(x.transpose(1, 2), keep[:, 0])))

    def min_length(self) -> int:
        """Shortest exported sequence: 4 positions still left after the last halving (export guards a convolution
        whose input is as short as its kernel). With two halvings or more the program takes one length, the max
        length (runtimes pad every text to it, which changes no output): over a range of lengths torch.export cannot
        prove a guard the INT8 graph puts on the twice-halved length (nested ceil-divisions), and refuses it."""
        shortest = (KERNEL + 1) * 2 ** self.config["blocks"]
        return max(shortest, self.config.get("max_length", shortest)) if self.config["blocks"] >= 2 else shortest
