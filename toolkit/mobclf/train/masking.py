"""Masked-LM inputs for BERT pre-training (Devlin et al. 2019) with whole-word masking (Cui et al. 2019/2021,
"Pre-Training with Whole Word Masking for Chinese BERT"): the characters of a Chinese word are masked together,
so the model cannot guess a masked character from the rest of its word.

    batch = TokenizedTexts(tokenizer, texts, offsets=True).batch(index)
    words = word_ids(texts.take(index), batch)        # [B, L]: the word of every token, -1 at [CLS]/[SEP]/padding
    inputs, labels = mask_tokens(batch["input_ids"], words, mask_prob=0.15, mask_id=tokenizer.mask_id,
                                 replacements=replacement_ids(tokenizer))
"""

from __future__ import annotations

import jieba
import torch

from mobclf.text.base import SPECIAL_TOKENS, Tokenizer, normalize_chars

IGNORE = -100  # the label of an unmasked position, which the loss skips
_SEGMENTER = jieba.Tokenizer()  # jieba's bundled dictionary (installed with the package), loaded on first use


def word_ids(texts: list[str], batch: dict[str, torch.Tensor], whole_word: bool = True) -> torch.Tensor:
    """The word of every token position of ``batch`` (the tokens of ``texts``, numbered 0, 1, ... within a text),
    -1 at special tokens and padding; ``batch`` must come from a tokenizer that adds ``[CLS]``/``[SEP]``, with
    offsets (``TokenizedTexts(..., offsets=True).batch``).

    Words are jieba's dictionary-only segmentation (HMM off; Latin words and numbers stay whole) of the text with
    full-width ASCII made ASCII; a token belongs to the word containing its first character. With
    ``whole_word=False`` every token is a word of its own (BERT's original token masking).
    """
    words = torch.full(batch["input_ids"].shape, -1, dtype=torch.long)
    for row, (text, length) in enumerate(zip(texts, batch["attention_mask"].sum(dim=1).tolist())):
        starts = batch["offsets"][row, 1:length - 1, 0].tolist()
        if not starts:
            continue
        if whole_word:
            owner = [0] * len(text)
            segments = _SEGMENTER.tokenize(normalize_chars(text, lowercase=False), HMM=False)
            for number, (_, begin, end) in enumerate(segments):
                owner[begin:end] = [number] * (end - begin)
            spans = torch.tensor([owner[start] for start in starts])
            words[row, 1:1 + len(starts)] = torch.unique_consecutive(spans, return_inverse=True)[1]
        else:
            words[row, 1:1 + len(starts)] = torch.arange(len(starts))
    return words


def replacement_ids(tokenizer: Tokenizer) -> torch.Tensor:
    """The ids a masked token may be replaced with at random: every id but the special tokens'."""
    return torch.tensor([index for index, token in enumerate(tokenizer.vocab) if token not in SPECIAL_TOKENS])


def mask_tokens(input_ids: torch.Tensor, words: torch.Tensor, *, mask_prob: float, mask_id: int,
                replacements: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking, drawn per word: each word of each row is chosen with probability ``mask_prob`` and all its
    tokens with it; a chosen token becomes ``mask_id`` (80%), a random ``replacements`` id (10%) or stays (10%).

    Returns the masked ids and the labels: the original id at chosen tokens, -100 elsewhere (positions whose word
    is -1 are never chosen). ``generator=None`` draws from torch's global RNG.
    """
    n_words = max(int(words.max()) + 1, 1)
    chosen_words = torch.rand(words.shape[0], n_words, generator=generator) < mask_prob
    chosen = chosen_words.gather(1, words.clamp(min=0)) & (words >= 0)
    labels = torch.where(chosen, input_ids, IGNORE)
    roll = torch.rand(input_ids.shape, generator=generator)
    random_ids = replacements[torch.randint(len(replacements), input_ids.shape, generator=generator)]
    masked = torch.where(chosen & (roll < 0.8), mask_id, input_ids)
    masked = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, masked)
    return masked, labels
