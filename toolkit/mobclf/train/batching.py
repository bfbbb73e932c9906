"""Token ids of many texts, tokenized a padded batch at a time when the batch is drawn (so a data set of any size is
never held as token ids), and the batches' row indices."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch

from mobclf.console import progress
from mobclf.data.dataset import Texts
from mobclf.train import distributed


def _spans(offsets: list[list[tuple[int, int]]], width: int) -> torch.Tensor:
    """The character spans of each text's tokens as int32 [B, width, 2]; (0, 0) beyond a text's tokens."""
    spans = torch.zeros((len(offsets), width, 2), dtype=torch.int32)
    for row, text_spans in enumerate(offsets):
        if text_spans:
            spans[row, :len(text_spans)] = torch.tensor(text_spans, dtype=torch.int32)
    return spans


class TokenizedTexts:
    """``texts`` in ``tokenizer``'s ids, tokenized when a batch is asked for: what a data set of any size costs here
    is its texts' token counts (counted once, for length-grouped batches), never its token ids. ``offsets``: batches
    carry each token's character span too (int32 [B, L, 2], to align two tokenizers' tokens)."""

    def __init__(self, tokenizer, texts: Sequence[str], offsets: bool = False):
        self.tokenizer, self.texts, self.offsets = tokenizer, Texts.of(texts), offsets

    def __len__(self) -> int:
        return len(self.texts)

    @cached_property
    def lengths(self) -> torch.Tensor:
        """Every text's token count (counted on first use, a chunk of texts at a time)."""
        lengths, chunk = torch.zeros(len(self.texts), dtype=torch.long), 4096
        for start in range(0, len(self.texts), chunk):
            stop = min(start + chunk, len(self.texts))
            lengths[start:stop] = torch.tensor([len(self.tokenizer.encode(text).ids)
                                                for text in self.texts[start:stop]], dtype=torch.long)
        return lengths

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows ``index`` padded to their own longest length: input_ids, attention_mask (and offsets)."""
        encoded = self.tokenizer.encode_batch(self.texts.take(index))
        batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if self.offsets:
            batch["offsets"] = _spans(encoded["offsets"], encoded["input_ids"].shape[1])
        return batch


def batch_indices(n: int, batch_size: int, shuffle: bool = False, seed: int = 0,
                  lengths: torch.Tensor | None = None, pool_batches: int = 50) -> list[torch.Tensor]:
    """Row indices of each batch, in order or shuffled with ``seed``.

    With ``lengths`` (when shuffling) texts of similar length share a batch, so short headlines are not padded to
    the length of a long article: the shuffled rows are cut into pools of ``pool_batches`` batches, each pool is
    sorted by length and cut into batches, and the batches are shuffled.
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if not shuffle or lengths is None:
        return list(order.split(batch_size))
    batches = [batch for pool in order.split(batch_size * pool_batches)
               for batch in pool[lengths[pool].argsort(stable=True)].split(batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, encoded: TokenizedTexts, batch_size: int = 128,
                   device: torch.device | str = "cpu", description: str = "predicting") -> torch.Tensor:
    """Logits [N, labels] of ``model(input_ids, attention_mask)`` for every encoded text, in order; ``model`` is a
    module or a runtime runner (ExecuTorch, onnxruntime) called the same way. Each batch's rows are written into the
    one [N, labels] result as they come (no list of batches to join: that would hold the logits twice).

    Under torchrun each process predicts every N-th batch into a zero-filled result and the results are summed, so
    every process gets every row (``distributed.summed``; adding zeros changes no value).
    """
    if isinstance(model, torch.nn.Module):
        model.eval()
    if not len(encoded):
        return torch.zeros(0)
    mine = distributed.my_batches(batch_indices(len(encoded), batch_size))
    logits = None
    with progress() as bar:
        task = bar.add_task(description, total=sum(len(index) for index in mine), status="")
        for index in mine:
            batch = {k: v.to(device) for k, v in encoded.batch(index).items()}
            out = model(**batch).float().cpu()
            if logits is None:
                logits = torch.zeros((len(encoded), out.shape[1]))
            logits[index] = out
            bar.advance(task, len(index))
    if not distributed.active():
        return logits
    width = distributed.same_on_every_rank(None if logits is None else logits.shape[1])  # rank 0 has batch 0
    return distributed.summed(torch.zeros((len(encoded), width)) if logits is None else logits, device)
