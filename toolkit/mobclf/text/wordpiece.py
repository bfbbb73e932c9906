"""WordPiece tokenizer with BERT's rules, run by HF ``tokenizers``; trained on texts or read from a BERT vocab.txt.

Rules (those of BERT's ``BasicTokenizer`` + ``WordpieceTokenizer``, so any BERT port reproduces them):

1. Normalise (``BertNormalizer``): drop control characters and U+FFFD, map whitespace to a space, put spaces
   around CJK ideographs, and with ``lowercase`` lower-case (Unicode) and strip accents (NFD, drop marks).
2. Pre-tokenise (``BertPreTokenizer``): split on whitespace and around every punctuation character.
3. WordPiece: greedy longest-match-first over each word, continuation pieces prefixed ``##``; a word longer
   than 100 characters, or with a piece not in the vocabulary, becomes one ``[UNK]``.

Offsets come from ``tokenizers`` and index the original text (an ``[UNK]`` word covers the whole word).
Training (``build``) uses ``BertWordPieceTokenizer.train_from_iterator`` with ``limit_alphabet=21128`` so rare
Chinese characters keep their own ids; ``min_freq`` is the minimum frequency of a merge (every character of the
alphabet is kept). When the alphabet alone would overflow ``vocab_size``, training is repeated with the least
frequent characters left out. ``hf_tokenizer.json`` is the same tokenizer for other ``tokenizers`` runtimes, with
the spec's truncation and special tokens built in (it gives no ids at all for an empty text without special
tokens, where ``encode`` gives ``[UNK]``).

Training is not bit-reproducible: tokenizers 0.23 breaks ties between equally frequent merges in hash-map order
(huggingface/tokenizers#1794), so two trainings on the same texts can differ in a few tokens. Ids are fixed by
the saved ``vocab.txt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, normalizers, pre_tokenizers, processors
from tokenizers.implementations import BertWordPieceTokenizer

from mobclf.errors import UserError
from mobclf.text.base import SPECIAL_TOKENS, Tokenizer

HF_TOKENIZER_FILE = "hf_tokenizer.json"
LIMIT_ALPHABET = 21128
DEFAULT_VOCAB_SIZE = 21128  # bert-base-chinese's


class WordPieceTokenizer(Tokenizer):
    kind = "wordpiece"

    def __init__(self, vocab: list[str], **options):
        super().__init__(vocab, **options)
        self._wordpiece = HFTokenizer(models.WordPiece(self.token_ids, unk_token="[UNK]",
                                                       max_input_chars_per_word=100))
        self._wordpiece.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=self.lowercase)
        self._wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def _iter_tokens(self, text: str) -> Iterator[tuple[str, int, int]]:
        encoding = self._wordpiece.encode(text, add_special_tokens=False)
        for token, (start, end) in zip(encoding.tokens, encoding.offsets):
            yield token, start, end

    def _extra_spec(self) -> dict:
        return {"hf_tokenizer_file": HF_TOKENIZER_FILE}

    def _save_files(self, directory: Path) -> None:
        standalone = HFTokenizer.from_str(self._wordpiece.to_str())
        if self.add_special_tokens:
            standalone.post_processor = processors.BertProcessing(("[SEP]", self.sep_id), ("[CLS]", self.cls_id))
        standalone.enable_truncation(self.max_length)
        standalone.save(str(directory / HF_TOKENIZER_FILE))

    @classmethod
    def build(cls, texts: Iterable[str], *, vocab_size: int | None = None, min_freq: int = 1,
              lowercase: bool = True, **options) -> WordPieceTokenizer:
        """Train a WordPiece vocabulary of at most ``vocab_size`` tokens (default 21128) on ``texts``."""
        vocab_size = vocab_size or DEFAULT_VOCAB_SIZE
        if vocab_size <= len(SPECIAL_TOKENS):
            raise UserError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens (got {vocab_size})")
        texts = texts if isinstance(texts, Sequence) else list(texts)  # may be trained on more than once
        limit_alphabet = LIMIT_ALPHABET
        while True:
            trainer = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                             lowercase=lowercase)
            trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_freq,
                                        limit_alphabet=limit_alphabet, special_tokens=list(SPECIAL_TOKENS),
                                        show_progress=False)
            ids = trainer.get_vocab()
            excess = len(ids) - vocab_size
            if excess <= 0:
                break
            alphabet = sum(len(token) == 1 for token in ids)
            limit_alphabet = alphabet - excess
            if limit_alphabet < 1:
                raise UserError(f"vocab_size {vocab_size} is too small for these texts")
        return cls(sorted(ids, key=ids.get), vocab_size=vocab_size, min_freq=min_freq, lowercase=lowercase,
                   **options)
