"""Tokenizers (char, jieba words, WordPiece) built from training texts and saved as plain files a phone app reads.

    tokenizer = build_tokenizer("jieba", texts, max_length=64, add_special_tokens=False, vocab_size=20000)
    batch = tokenizer.encode_batch(["北京时间今晚", "iPhone 15发布"])   # input_ids, attention_mask, offsets
    tokenizer.save(artifact_dir / "tokenizer")
    same = load_tokenizer(artifact_dir / "tokenizer")

The rules each tokenizer follows, precise enough to port, are in the docstrings of ``base`` (ids, special
tokens, truncation, offsets, files), ``char``, ``jieba_words`` and ``wordpiece``.
"""

from __future__ import annotations

from mobclf.text.base import SPECIAL_TOKENS, Encoding, Tokenizer
from mobclf.text.build import TOKENIZERS, build_tokenizer, load_tokenizer, tokenizer_from_vocab
from mobclf.text.char import CharTokenizer
from mobclf.text.jieba_words import JiebaTokenizer
from mobclf.text.wordpiece import WordPieceTokenizer

__all__ = ["SPECIAL_TOKENS", "TOKENIZERS", "CharTokenizer", "Encoding", "JiebaTokenizer", "Tokenizer",
           "WordPieceTokenizer", "build_tokenizer", "load_tokenizer", "tokenizer_from_vocab"]
