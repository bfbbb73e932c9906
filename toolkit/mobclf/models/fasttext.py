"""FastText student (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification").

The text's vector is the average of its token embeddings and of its token n-gram embeddings; n-grams share
``buckets`` rows by hashing, and a linear layer gives the labels. N-grams are hashed from the token ids inside the
model, so a bundle takes the same ids as every other student and the phone's tokenizers need nothing new.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mobclf.errors import UserError
from mobclf.models.token_student import TokenStudent, real_tokens

HASH_MULTIPLIER = 1_000_003  # a prime; with ids below 2^20 a trigram's hash stays below 2^63 (about 10^18)


class NgramBuckets(nn.Module):
    """The bucket of the n-gram that starts at each position [B, L], and whether all its n tokens are real: integer
    arithmetic that INT8 quantization must leave alone (it would observe the ids as activations)."""

    def __init__(self, n: int, buckets: int):
        super().__init__()
        self.n, self.buckets = n, buckets
        # an int64 tensor, not a Python int: PT2E turns the scalars of a multiplication into float constants
        self.register_buffer("multiplier", torch.tensor(HASH_MULTIPLIER), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hashed, complete = input_ids, attention_mask
        for shift in range(1, self.n):  # the tokens ``shift`` positions on, padding past the end
            hashed = hashed * self.multiplier + F.pad(input_ids, (0, shift))[:, shift:]
            complete = complete * F.pad(attention_mask, (0, shift))[:, shift:]
        return torch.remainder(hashed, self.buckets), complete


class FastText(TokenStudent):
    """``config``: vocab_size, embedding_dim, ngrams (sizes ≥ 2, e.g. [2]), buckets, dropout, num_labels."""

    def __init__(self, config: dict):
        super().__init__(config)
        if any(n < 2 or n > 3 for n in config["ngrams"]):
            raise UserError(f"FastText n-gram sizes are 2 or 3, not {config['ngrams']}")
        self.buckets = nn.ModuleList(NgramBuckets(n, config["buckets"]) for n in config["ngrams"])
        self.ngrams = nn.ModuleList(nn.Embedding(config["buckets"], config["embedding_dim"])
                                    for _ in config["ngrams"])
        self.classifier = nn.Linear(config["embedding_dim"], config["num_labels"])

    @property
    def feature_dim(self) -> int:
        return self.config["embedding_dim"]

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Each position's token embedding plus the embeddings of the n-grams that start there [B, L, D]."""
        tokens = self.embedding(input_ids)
        summed = tokens * real_tokens(attention_mask, tokens)
        for buckets, table in zip(self.buckets, self.ngrams):
            rows, complete = buckets(input_ids, attention_mask)
            summed = summed + table(rows) * real_tokens(complete, summed)
        return summed

    def _count(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Tokens plus complete n-grams of each text [B, 1]: a text of k tokens has k - n + 1 n-grams of size n.
        In float: PT2E would turn the integer scalars into float constants."""
        tokens = attention_mask.sum(1, keepdim=True).float()
        return sum((tokens - n + 1).clamp_min(0) for n in self.config["ngrams"]) + tokens

    def classify(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        average = features.sum(1) / self._count(attention_mask).clamp_min(1.0)
        return self.classifier(self.dropout(average))
