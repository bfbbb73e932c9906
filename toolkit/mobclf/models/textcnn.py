"""TextCNN student (Kim 2014, "Convolutional Neural Networks for Sentence Classification").

Embedding → parallel 1-D convolutions of several kernel sizes ("same" padding, so every token position keeps a
feature vector for FitNets hints and attention transfer) → ReLU → max-over-time pooling over real tokens → dropout →
linear, one logit per label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mobclf.errors import UserError
from mobclf.models.token_student import TokenStudent, real_tokens


class ConvFeatures(nn.Module):
    """Parallel convolutions over a [B, L, D] sequence → ReLU feature map [B, L, C].

    Each input is zero-padded by (k-1)//2 on the left and k//2 on the right (what ``padding="same"`` does, spelled
    out so that even kernel sizes need no hidden copy and export as a plain pad + conv).
    """

    def __init__(self, in_channels: int, kernel_sizes: list[int], num_filters: int | list[int]):
        """``num_filters``: one count for every kernel size, or one per kernel size (a pruned TextCNN)."""
        super().__init__()
        self.kernel_sizes = list(kernel_sizes)
        widths = list(num_filters) if isinstance(num_filters, (list, tuple)) else [num_filters] * len(kernel_sizes)
        if len(widths) != len(self.kernel_sizes):
            raise UserError(f"{len(widths)} filter counts for {len(self.kernel_sizes)} kernel sizes")
        self.convs = nn.ModuleList(nn.Conv1d(in_channels, width, k) for k, width in zip(kernel_sizes, widths))

    @property
    def out_channels(self) -> int:
        return sum(conv.out_channels for conv in self.convs)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        channels_first = sequence.transpose(1, 2)
        maps = [torch.relu(conv(F.pad(channels_first, ((k - 1) // 2, k // 2))))
                for k, conv in zip(self.kernel_sizes, self.convs)]
        return torch.cat(maps, dim=1).transpose(1, 2)


class MaskedMaxPool(nn.Module):
    """Max over time [B, L, C] → [B, C], ignoring padding (so a padded batch equals one-by-one inference).

    Padding becomes -1e4 by a multiply and an add (for finite values the same numbers as ``masked_fill``), which
    XNNPACK runs: ExecuTorch's portable ``where`` kernel that ``masked_fill`` lowers to took 42% of an INT8 TextCNN
    ``.pte``'s call. INT8 quantization leaves this module in fp32 (its -1e4 would take the int8 range)."""

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = real_tokens(attention_mask, features)
        return (features * keep + (keep - 1) * 1e4).amax(dim=1)


class TextCNN(TokenStudent):
    """Kim's CNN over token embeddings; ``config``: vocab_size, embedding_dim, kernel_sizes, num_filters (one
    count, or a list with one per kernel size after pruning), dropout, num_labels."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.convs = ConvFeatures(config["embedding_dim"], config["kernel_sizes"], config["num_filters"])
        self.pool = MaskedMaxPool()
        self.classifier = nn.Linear(self.convs.out_channels, config["num_labels"])

    @property
    def feature_dim(self) -> int:
        return self.convs.out_channels

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Per-token conv activations [B, L, C] (padding is the zero embedding the convolutions pad with)."""
        return self.convs(self.embedding(input_ids))

    def classify(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(features, attention_mask)))

    # What structured pruning (compress/prune.py, torch-pruning) asks of a model.

    def prunable_groups(self, ratio: float) -> dict:
        """torch-pruning ``MetaPruner`` options: conv filters are pruned (each kernel size keeps its own count);
        the embedding and the label outputs stay."""
        return {"ignored_layers": [self.embedding, self.classifier]}

    def pruned_geometry(self) -> dict:
        """The ``config`` keys of the current (pruned) geometry."""
        return {"num_filters": [conv.out_channels for conv in self.convs.convs]}


def load_pretrained_vectors(vocab: list[str], vocab_file: Path, vectors_file: Path) -> tuple[torch.Tensor, float]:
    """Embedding matrix for ``vocab`` from a ``vocab.txt`` + ``.npy`` pair; unknown tokens keep small random rows.

    Returns the matrix and the fraction of non-special tokens that were found.
    """
    for path in (vocab_file, vectors_file):
        if not Path(path).is_file():
            raise UserError("pretrained vectors file not found; give a vocab.txt and a matching .npy", path=path)
    words = Path(vocab_file).read_text(encoding="utf-8").split("\n")
    vectors = np.load(vectors_file)
    if vectors.ndim != 2 or vectors.shape[0] > len(words):
        raise UserError(f"shape {vectors.shape} does not match {len(words)} lines of {vocab_file}", path=vectors_file)
    index = {word: row for row, word in enumerate(words[: vectors.shape[0]]) if word}
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(len(vocab), vectors.shape[1], generator=generator) * float(vectors.std())
    matrix[0] = 0.0
    found = 0
    for token_id, token in enumerate(vocab):
        if token in index and not token.startswith("["):
            matrix[token_id] = torch.from_numpy(vectors[index[token]].astype(np.float32))
            found += 1
    return matrix, found / max(1, sum(not t.startswith("[") for t in vocab))
