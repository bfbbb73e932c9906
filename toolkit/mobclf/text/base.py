"""What every mobclf tokenizer shares: special tokens, id lookup, truncation, padding and the saved form.

A tokenizer splits a text into ``(token, start, end)`` triples (``tokenize``); everything after that is common:

- **Ids.** A token's id is its line number in ``vocab.txt`` (0-based); a token not in the vocabulary gets the id of
  ``[UNK]``. Vocabularies built here start with ``[PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4``; a BERT
  ``vocab.txt`` keeps its own ids (``[UNK]=100`` in bert-base-chinese), so read ``tokenizer.unk_id`` etc.
- **Special tokens and truncation.** With ``add_special_tokens`` an encoding is ``[CLS] t1 .. tn [SEP]`` with
  ``n <= max_length - 2``; without, ``t1 .. tn`` with ``n <= max_length``. Tokens past the limit are dropped.
- **Empty texts.** A text without tokens encodes as ``[CLS] [SEP]``, or as a single ``[UNK]`` without special
  tokens, so every encoding has at least one id.
- **Offsets.** ``(start, end)`` index the original, un-normalised text in Unicode code points (Python ``str``
  indices; in Java use ``codePointCount``, not UTF-16 ``char`` indices). Special tokens and the ``[UNK]`` that
  stands for an empty text have ``(0, 0)``.
- **Saved form** (``save``): ``tokenizer.json`` is the spec (type, options, file names, number of tokens) and
  ``vocab.txt`` holds one token per line, UTF-8, ``\\n`` line ends. Tokens never contain whitespace.

The char and jieba tokenizers share the normalisation below (``normalize_chars``); it maps every code point to
exactly one code point, so offsets into the normalised text are offsets into the original one.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import ClassVar, Iterable, Iterator

import torch

from mobclf.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SPEC_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
SPEC_VERSION = 1

# Exactly the code points for which Python's str.isspace() is true, written out for ports to other languages.
WHITESPACE = "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
             "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# Zero-width space, non-joiner, joiner, word joiner, byte-order mark: invisible, so dropped like whitespace.
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
SKIPPED_CHARS = WHITESPACE + ZERO_WIDTH

# Full-width ASCII variants U+FF01..U+FF5E ("ＡＢＣ１２３！，（") become ASCII U+0021..U+007E ("ABC123!,(").
_FULLWIDTH_TO_ASCII = {code: chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)}
_ASCII_LOWER = {ord(char): char.lower() for char in string.ascii_uppercase}
_FULLWIDTH_TO_ASCII_LOWER = {code: char.lower() for code, char in _FULLWIDTH_TO_ASCII.items()} | _ASCII_LOWER


def normalize_chars(text: str, *, lowercase: bool) -> str:
    """Full-width ASCII variants to ASCII, then (if ``lowercase``) A-Z to a-z; nothing else changes."""
    return text.translate(_FULLWIDTH_TO_ASCII_LOWER if lowercase else _FULLWIDTH_TO_ASCII)


def ascii_lower(token: str) -> str:
    """Lower-case A-Z only (Python's ``str.lower`` also changes other scripts, and can change lengths)."""
    return token.translate(_ASCII_LOWER)


@dataclass(frozen=True)
class Encoding:
    """One encoded text: ids (truncated to ``max_length``, special tokens included) and their character spans."""

    ids: list[int]
    offsets: list[tuple[int, int]]


class Tokenizer:
    """Text → ids for one vocabulary; subclasses only say how a text splits into tokens (``_iter_tokens``)."""

    kind: ClassVar[str]
    pad_id = 0
    unk_id = 1
    cls_id = 2
    sep_id = 3
    mask_id = 4

    def __init__(self, vocab: list[str], *, max_length: int, add_special_tokens: bool, lowercase: bool = True,
                 vocab_size: int | None = None, min_freq: int | None = 1):
        smallest = 3 if add_special_tokens else 1
        if max_length < smallest:
            raise UserError(f"max_length must be at least {smallest} (got {max_length})")
        self.max_length = max_length
        self.add_special_tokens = add_special_tokens
        self.lowercase = lowercase
        self.vocab_size = vocab_size
        self.min_freq = min_freq
        self._set_vocab(vocab)

    def _set_vocab(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self.token_ids = {token: index for index, token in enumerate(vocab)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            self.token_ids[token] for token in SPECIAL_TOKENS)

    @property
    def spec(self) -> dict:
        """JSON-able description: options, file names and size; ``tokenizer.json`` holds exactly this."""
        return {"type": self.kind, "version": SPEC_VERSION, "max_length": self.max_length,
                "add_special_tokens": self.add_special_tokens, "lowercase": self.lowercase,
                "vocab_size": self.vocab_size, "min_freq": self.min_freq, "vocab_file": VOCAB_FILE,
                "num_tokens": len(self.vocab), **self._extra_spec()}

    def _extra_spec(self) -> dict:
        return {}

    def _iter_tokens(self, text: str) -> Iterator[tuple[str, int, int]]:
        raise NotImplementedError

    def tokenize(self, text: str) -> list[tuple[str, int, int]]:
        """``(token, start, end)`` for every token, before id lookup and truncation."""
        return list(self._iter_tokens(text))

    def encode(self, text: str) -> Encoding:
        """Ids and offsets of one text, truncated, with ``[CLS]``/``[SEP]`` if ``add_special_tokens``."""
        budget = self.max_length - 2 if self.add_special_tokens else self.max_length
        tokens = list(islice(self._iter_tokens(text), budget))
        ids = [self.token_ids.get(token, self.unk_id) for token, _, _ in tokens]
        offsets = [(start, end) for _, start, end in tokens]
        if self.add_special_tokens:
            return Encoding([self.cls_id, *ids, self.sep_id], [(0, 0), *offsets, (0, 0)])
        return Encoding(ids, offsets) if ids else Encoding([self.unk_id], [(0, 0)])

    def encode_batch(self, texts: list[str]) -> dict:
        """``input_ids`` and ``attention_mask`` (LongTensor[B, L], padded to the longest) and ``offsets``."""
        return padded_batch([self.encode(text) for text in texts], self.pad_id)

    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json``, ``vocab.txt`` and the subclass's files into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / VOCAB_FILE).write_text("".join(token + "\n" for token in self.vocab), encoding="utf-8")
        self._save_files(directory)
        (directory / SPEC_FILE).write_text(json.dumps(self.spec, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")

    def _save_files(self, directory: Path) -> None:
        """Files beyond ``vocab.txt`` (the jieba dictionary, ...)."""

    @classmethod
    def build(cls, texts: Iterable[str], *, vocab_size: int | None = None, min_freq: int = 1,
              **options) -> Tokenizer:
        """A tokenizer whose vocabulary is ``frequency_vocab`` over ``texts``."""
        tokenizer = cls(list(SPECIAL_TOKENS), vocab_size=vocab_size, min_freq=min_freq, **options)
        tokenizer._set_vocab(frequency_vocab(tokenizer, texts, vocab_size=vocab_size, min_freq=min_freq))
        return tokenizer

    @classmethod
    def from_saved(cls, directory: Path, spec: dict, vocab: list[str]) -> Tokenizer:
        """Rebuild from a saved directory whose spec and vocabulary were already read."""
        return cls(vocab, **common_options(spec))


def padded_batch(encodings: list[Encoding], pad_id: int) -> dict:
    """Encodings as ``input_ids`` and ``attention_mask`` (LongTensor[B, L], padded on the right with ``pad_id`` to the
    longest) and their ``offsets``."""
    width = max((len(encoding.ids) for encoding in encodings), default=1)
    input_ids = [encoding.ids + [pad_id] * (width - len(encoding.ids)) for encoding in encodings]
    attention_mask = [[1] * len(encoding.ids) + [0] * (width - len(encoding.ids)) for encoding in encodings]
    return {"input_ids": torch.tensor(input_ids, dtype=torch.long).reshape(len(encodings), width),
            "attention_mask": torch.tensor(attention_mask, dtype=torch.long).reshape(len(encodings), width),
            "offsets": [encoding.offsets for encoding in encodings]}


def saved_file(directory: Path, name: object) -> Path:
    """The file ``name`` of a saved tokenizer, as its spec names it: a plain file right in ``directory`` (a name
    that climbs out, ``../x`` or ``/etc/x``, or a symbolic link could make mobclf read anything)."""
    path = Path(directory) / str(name)
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or path.is_symlink():
        raise UserError(f"names the file {name!r}, which is not a file of the tokenizer folder; rebuild the tokenizer",
                        path=Path(directory) / SPEC_FILE)
    return path


def common_options(spec: dict) -> dict:
    """The constructor options every tokenizer spec holds."""
    return {key: spec[key] for key in ("max_length", "add_special_tokens", "lowercase", "vocab_size", "min_freq")}


def frequency_vocab(tokenizer: Tokenizer, texts: Iterable[str], *, vocab_size: int | None,
                    min_freq: int) -> list[str]:
    """Special tokens, then tokens seen at least ``min_freq`` times, most frequent first, ties by token string,
    ``vocab_size`` in all (special tokens included; ``None`` keeps every token)."""
    if vocab_size is not None and vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens (got {vocab_size})")
    counts = Counter(token for text in texts for token, _, _ in tokenizer._iter_tokens(text))
    for token in SPECIAL_TOKENS:
        counts.pop(token, None)
    ranked = sorted((token for token, count in counts.items() if count >= min_freq),
                    key=lambda token: (-counts[token], token))
    kept = ranked if vocab_size is None else ranked[:vocab_size - len(SPECIAL_TOKENS)]
    return [*SPECIAL_TOKENS, *kept]


def read_vocab(path: Path) -> list[str]:
    """One token per line, special tokens included; a missing, unreadable or malformed file is a UserError."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise UserError("vocabulary file is missing; rebuild or re-copy the tokenizer directory", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the vocabulary ({err})", path=path) from None
    if lines[-1] == "":
        lines.pop()
    tokens = [line.removesuffix("\r") for line in lines]
    for line, token in enumerate(tokens, 1):
        if not token:
            raise UserError("empty line in the vocabulary; one token per line", path=path, line=line)
    missing = sorted(set(SPECIAL_TOKENS) - set(tokens), key=SPECIAL_TOKENS.index)
    if missing:
        raise UserError(f"the vocabulary lacks the special tokens {', '.join(missing)}", path=path)
    return tokens
