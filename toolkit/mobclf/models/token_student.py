"""What the small students with their own tokenizer share (TextCNN, DPCNN, FastText, TextRNN, BiLSTM-attention).

Each reads token ids and a mask, gives a feature vector per token (``features``, [B, L, C]: what the FitNets hint
and attention transfer act on, see ``distill/token_student.py``) and turns them into one logit per label
(``classify``). Padding never changes a text's logits, so a padded batch equals one-by-one inference and runtimes
may pad to the exported program's shortest input.
"""

from __future__ import annotations

import torch
from torch import nn


class TokenStudent(nn.Module):
    """A student over its own token ids; ``config`` holds vocab_size, embedding_dim, dropout, num_labels and the
    subclass's geometry. A subclass whose exported program needs more than the export's shortest input says so in a
    ``min_length()`` method (see ``export/exportable.py``)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config["vocab_size"], config["embedding_dim"], padding_idx=0)
        self.dropout = nn.Dropout(config.get("dropout", 0.5))

    @property
    def feature_dim(self) -> int:
        raise NotImplementedError

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Per-token features [B, L, C]."""
        raise NotImplementedError

    def classify(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, labels] from the features of the real tokens."""
        raise NotImplementedError

    def attention_map(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What attention transfer compares with the teacher's [CLS] attention: the features themselves (their
        activation map, Zagoruyko & Komodakis 2017), or [B, L] attention weights of a model that has them."""
        return features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(input_ids, attention_mask), attention_mask)

    @property
    def word_embedding(self) -> nn.Embedding:
        return self.embedding

    def replace_word_embedding(self, embedding: nn.Embedding) -> None:
        """Swap in a (vocabulary-pruned) embedding table; ``[PAD]`` stays row 0."""
        self.embedding = embedding
        self.config["vocab_size"] = embedding.num_embeddings


def real_tokens(attention_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The mask as [B, L, 1] in ``like``'s dtype, to multiply per-token features with."""
    return attention_mask[:, :, None].to(like.dtype)


def masked_mean(features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens [B, L, C] → [B, C] (0 for a text without tokens); a batched matrix product, which
    XNNPACK runs (its ``sum`` would not be delegated)."""
    keep = attention_mask[:, None, :].to(features.dtype)
    return torch.bmm(keep, features).flatten(1) / keep.sum(-1).clamp_min(1.0)
