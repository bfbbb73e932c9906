"""Character tokenizer: every CJK character is a token, ASCII letter/digit runs stay whole.

Rules, applied to each code point of the original text (offsets index the original text):

1. Normalise (``normalize_chars``): full-width ASCII variants U+FF01..U+FF5E become ASCII U+0021..U+007E
   (``"ＮＢＡ１２！"`` → ``"NBA12!"``); with ``lowercase``, A-Z become a-z. No NFKC: ``"Ⅱ"``, ``"①"`` and
   ligatures stay as they are, and no code point changes the length of the text.
2. Split: a maximal run of ``[A-Za-z0-9]`` is one token (``"iPhone15"`` → ``"iphone15"``); every other code point
   is its own token (a Chinese character, ``"。"``, ``"!"``, ``"é"``, each code point of an emoji sequence),
   except whitespace and zero-width characters (``SKIPPED_CHARS``), which separate tokens and are dropped.

In regex terms, tokens are the matches of ``[A-Za-z0-9]+|[^SKIPPED_CHARS]`` over the normalised text.
"""

from __future__ import annotations

import re
from typing import Iterator

from mobclf.text.base import SKIPPED_CHARS, Tokenizer, normalize_chars

_TOKEN = re.compile(f"[A-Za-z0-9]+|[^{re.escape(SKIPPED_CHARS)}]")


class CharTokenizer(Tokenizer):
    kind = "char"

    def _iter_tokens(self, text: str) -> Iterator[tuple[str, int, int]]:
        for match in _TOKEN.finditer(normalize_chars(text, lowercase=self.lowercase)):
            yield match.group(), match.start(), match.end()
