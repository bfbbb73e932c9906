"""Make a tokenizer: build one from training texts, load a saved one (a checkpoint tokenizer too), or read a BERT
vocab.txt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from mobclf.errors import UserError
from mobclf.text.base import SPEC_FILE, SPEC_VERSION, Tokenizer, read_vocab, saved_file
from mobclf.text.char import CharTokenizer
from mobclf.text.checkpoint import CheckpointTokenizer
from mobclf.text.jieba_words import JiebaTokenizer
from mobclf.text.wordpiece import WordPieceTokenizer

TOKENIZERS: dict[str, type[Tokenizer]] = {cls.kind: cls for cls in (CharTokenizer, JiebaTokenizer, WordPieceTokenizer)}


def build_tokenizer(kind: str, texts: Iterable[str], *, max_length: int, add_special_tokens: bool,
                    vocab_size: int | None = None, min_freq: int = 1, lowercase: bool = True,
                    user_dict: Path | None = None, hmm: bool = False) -> Tokenizer:
    """A ``kind`` tokenizer ("char", "jieba" or "wordpiece") with a vocabulary learnt from ``texts``.

    ``vocab_size`` counts the special tokens (``None``: every token for char/jieba, 21128 for wordpiece);
    ``user_dict`` and ``hmm`` apply to jieba only.
    """
    if kind not in TOKENIZERS:
        raise UserError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TOKENIZERS)}")
    if kind != "jieba" and (user_dict is not None or hmm):
        raise UserError(f"a user dictionary and HMM apply to the jieba tokenizer only, not to {kind!r}")
    jieba_options = {"user_dict": user_dict, "hmm": hmm} if kind == "jieba" else {}
    return TOKENIZERS[kind].build(texts, max_length=max_length, add_special_tokens=add_special_tokens,
                                  vocab_size=vocab_size, min_freq=min_freq, lowercase=lowercase, **jieba_options)


def load_tokenizer(directory: Path, max_length: int | None = None) -> Tokenizer:
    """Rebuild a tokenizer from the files ``Tokenizer.save`` wrote, and from nothing else.

    ``max_length`` replaces the saved one (a teacher of length 32 reusing the tokenizer of a model pre-trained at 128).
    """
    spec_path = Path(directory) / SPEC_FILE
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no {SPEC_FILE}: not a saved tokenizer directory", path=directory) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read the tokenizer spec ({err}); rebuild the tokenizer", path=spec_path) from None
    if not isinstance(spec, dict) or spec.get("type") not in (*TOKENIZERS, CheckpointTokenizer.kind):
        raise UserError(f"not a tokenizer spec: the type must be one of {', '.join(TOKENIZERS)} or "
                        f"{CheckpointTokenizer.kind}", path=spec_path)
    if spec.get("version") != SPEC_VERSION:
        raise UserError(f"spec version {spec.get('version')!r} is not {SPEC_VERSION}; rebuild the tokenizer",
                        path=spec_path)
    try:
        if max_length is not None:
            spec = {**spec, "max_length": max_length}
        if spec["type"] == CheckpointTokenizer.kind:
            return CheckpointTokenizer.from_saved(spec_path.parent, spec)
        vocab_path = saved_file(spec_path.parent, spec["vocab_file"])
        vocab = read_vocab(vocab_path)
        if len(vocab) != spec["num_tokens"]:
            raise UserError(f"{len(vocab)} tokens where {SPEC_FILE} says {spec['num_tokens']}; the file is damaged",
                            path=vocab_path)
        return TOKENIZERS[spec["type"]].from_saved(spec_path.parent, spec, vocab)
    except KeyError as err:
        raise UserError(f"the field {err} is missing; rebuild the tokenizer", path=spec_path) from None


def tokenizer_from_vocab(vocab_file: Path, *, max_length: int, add_special_tokens: bool = True,
                         lowercase: bool = True) -> Tokenizer:
    """A WordPiece tokenizer over a BERT ``vocab.txt`` (a local HF checkpoint); ids are its line numbers."""
    return WordPieceTokenizer(read_vocab(Path(vocab_file)), max_length=max_length,
                              add_special_tokens=add_special_tokens, lowercase=lowercase, vocab_size=None,
                              min_freq=None)
