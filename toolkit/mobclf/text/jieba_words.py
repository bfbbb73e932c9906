"""Jieba word tokenizer: dictionary-only segmentation (HMM off) that a phone can reproduce from one saved file.

Rules (offsets index the original text):

1. Normalise full-width ASCII variants to ASCII (``normalize_chars`` without lower-casing, so dictionary words
   such as ``"T恤"`` still match).
2. Segment with jieba 0.42.1's ``cut(text, HMM=False)`` over the saved dictionary ``jieba_dict.txt``. Each
   maximal run of ``[\\u4E00-\\u9FD5a-zA-Z0-9+#&._%-]`` is cut along the best path: the candidates at
   position i are the dictionary words (freq > 0) starting at i, or the single character if there are none;
   ``best[i] = max(log(freq(w) or 1) - log(total) + best[i + len(w)])`` over the candidates, computed from the
   end of the run backwards in double precision, ``total`` = sum of all frequencies in the file, ties to the
   longer candidate. Consecutive single-character ``[a-zA-Z0-9]`` words on that path are joined into one word.
   Every code point outside such runs is a word of its own. (A port must compute ``log`` as Python does; a
   last-bit difference can flip an exact tie.)
3. Drop whitespace and zero-width characters (jieba yields each as a word of its own, and ``"\\r\\n"`` as one
   word); with ``lowercase``, lower-case A-Z in the remaining words.

``jieba_dict.txt`` is jieba's bundled ``dict.txt`` with the user dictionary merged in: one ``word freq`` line per
word (no part-of-speech tags), bundled words in their original order (a duplicate keeps its last frequency),
user words replacing a bundled word's frequency in place or appended in file order. A user-dictionary line is
``word [freq] [tag]`` as in jieba; a missing ``freq`` becomes jieba's ``suggest_freq(word)`` over the bundled
dictionary, which keeps the word whole; ``freq`` 0 removes a word. Loading reads only the saved file: jieba's
installed dictionary and its cache in the temp directory are never used. ``hmm=True`` (not the default) adds
jieba's HMM for unknown words, whose model is not saved, so a phone cannot reproduce it.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Iterable, Iterator

import jieba

from mobclf.errors import UserError
from mobclf.text.base import (SKIPPED_CHARS, Tokenizer, ascii_lower, common_options, normalize_chars,
                              saved_file)

DICTIONARY_FILE = "jieba_dict.txt"
_SKIPPED_WORDS = frozenset(SKIPPED_CHARS) | {"\r\n"}

jieba.setLogLevel(logging.WARNING)  # jieba logs every dictionary load to stderr at DEBUG


class JiebaTokenizer(Tokenizer):
    kind = "jieba"

    def __init__(self, vocab: list[str], *, dictionary: bytes, hmm: bool = False, user_dict: str | None = None,
                 dictionary_source: str = DICTIONARY_FILE, **options):
        """``dictionary``: the bytes of ``jieba_dict.txt``; ``dictionary_source`` names it in error messages."""
        super().__init__(vocab, **options)
        self.dictionary = dictionary
        self.hmm = hmm
        self.user_dict = user_dict
        self._segmenter = _segmenter(dictionary, dictionary_source)

    def __getstate__(self) -> dict:
        """Pickle without the segmenter (jieba's holds a lock); ``__setstate__`` rebuilds it from the bytes."""
        return {name: value for name, value in self.__dict__.items() if name != "_segmenter"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._segmenter = _segmenter(self.dictionary, DICTIONARY_FILE)

    def _iter_tokens(self, text: str) -> Iterator[tuple[str, int, int]]:
        start = 0
        for word in self._segmenter.cut(normalize_chars(text, lowercase=False), HMM=self.hmm):
            end = start + len(word)
            if word not in _SKIPPED_WORDS:
                yield (ascii_lower(word) if self.lowercase else word), start, end
            start = end

    def _extra_spec(self) -> dict:
        return {"dictionary_file": DICTIONARY_FILE, "hmm": self.hmm, "user_dict": self.user_dict}

    def _save_files(self, directory: Path) -> None:
        (directory / DICTIONARY_FILE).write_bytes(self.dictionary)

    @classmethod
    def build(cls, texts: Iterable[str], *, user_dict: Path | None = None, hmm: bool = False,
              **options) -> JiebaTokenizer:
        """Vocabulary by frequency over ``texts``, segmented with the bundled dictionary plus ``user_dict``."""
        return super().build(texts, dictionary=merged_dictionary(user_dict), hmm=hmm,
                             user_dict=None if user_dict is None else Path(user_dict).name, **options)

    @classmethod
    def from_saved(cls, directory: Path, spec: dict, vocab: list[str]) -> JiebaTokenizer:
        path = saved_file(directory, spec["dictionary_file"])
        try:
            dictionary = path.read_bytes()
        except OSError as err:
            raise UserError(f"cannot read the jieba dictionary ({err.strerror}); rebuild the tokenizer",
                            path=path) from None
        return cls(vocab, dictionary=dictionary, hmm=spec["hmm"], user_dict=spec["user_dict"],
                   dictionary_source=str(path), **common_options(spec))


def merged_dictionary(user_dict: Path | None) -> bytes:
    """jieba's bundled dictionary with ``user_dict`` merged in, as ``word freq`` lines (see the module doc)."""
    with jieba.get_dict_file() as bundled:
        frequencies = {}
        for line in bundled.read().decode("utf-8").split("\n"):
            if line.strip():
                word, frequency = line.split(" ")[:2]
                frequencies[word] = int(frequency)
    if user_dict is not None:
        frequencies.update(_read_user_dict(Path(user_dict), _serialize(frequencies)))
    return _serialize(frequencies)


def _serialize(frequencies: dict[str, int]) -> bytes:
    return "".join(f"{word} {frequency}\n" for word, frequency in frequencies.items()).encode("utf-8")


def _read_user_dict(path: Path, bundled: bytes) -> dict[str, int]:
    """``word -> freq`` from a jieba user dictionary; a missing freq is suggested against ``bundled``."""
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")
    except FileNotFoundError:
        raise UserError("user dictionary not found", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the user dictionary ({err}); it must be UTF-8 text", path=path) from None
    entries: dict[str, int | None] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        word, frequency, _tag = jieba.re_userdict.match(line).groups()
        if any(char in SKIPPED_CHARS for char in word):
            raise UserError(f"{word!r} is not one word; write `word [freq] [tag]` with a lower-case tag",
                            path=path, line=number)
        entries[word] = None if frequency is None else int(frequency)
    if None in entries.values():
        suggester = _segmenter(bundled, "jieba's bundled dictionary")
        entries = {word: suggester.suggest_freq(word) if frequency is None else frequency
                   for word, frequency in entries.items()}
    return entries


def _segmenter(dictionary: bytes, name: str) -> jieba.Tokenizer:
    """A private jieba.Tokenizer over ``dictionary`` (bytes of ``word freq`` lines), loaded without jieba's cache."""
    source = io.BytesIO(dictionary)
    source.name = name  # named in jieba's error message
    segmenter = jieba.Tokenizer()
    try:
        segmenter.FREQ, segmenter.total = segmenter.gen_pfdict(source)
    except ValueError as err:
        raise UserError(f"{err}; rebuild the tokenizer") from None
    segmenter.initialized = True  # the prefix dictionary is set; jieba would otherwise load its own
    return segmenter
