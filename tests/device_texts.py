"""Texts for proving that the phone and browser tokenizers give exactly the ids Python gives.

Real texts come from ``../shared/data`` (``MOBCLF_SHARED_DATA`` overrides the path): THUCNews headlines, TNEWS
titles, auto-news paragraphs and Reuters stories, so Chinese, English and mixed text all occur. The tricky cases
cover what real data rarely holds: full-width ASCII, digits glued to letters, emoji (outside the BMP, so UTF-16
surrogate pairs in Java and JavaScript), zero-width and exotic whitespace, accents, control characters, empty and
over-long texts.
"""

from __future__ import annotations

import json
import os
from itertools import islice
from pathlib import Path

SHARED_DATA = Path(os.environ.get("MOBCLF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# (file under SHARED_DATA, how many texts); 6,000 in all.
SOURCES = (("thucnews/test.jsonl", 2000), ("tnews_fewclue/test.jsonl", 1005),
           ("autonews_unlabeled/texts.jsonl", 1495), ("reuters21578_modapte/test.jsonl", 1500))

TRICKY_TEXTS = [
    "", " ", "\t\n\r\n", "\u3000\u3000", "\u200b", "a", "。", "!!!",
    "ＮＢＡ总决赛：勇士１２０：１１０击败凯尔特人！",
    "iPhone15发布，售价5999元起（约合US$829）",
    "5G手机销量同比增长35.6%，华为Mate60Pro领跑",
    "C++与C#之争：AI时代程序员学什么？",
    "股市大涨😀🚀 投资者狂欢👨‍👩‍👧‍👦",
    "emoji only 🎉🎉🎉",
    "Café résumé naïve Ünïcödé ÀÉÎÕÜ İstanbul ΣΊΣΥΦΟΣ straße",
    "tab\there\x0bvertical\x0cform\x1cfile\x85next\xa0nbsp\u2028line",
    "zero\u200bwidth\u200cjoin\u200dword\u2060joiner\ufeffbom",
    "control\x00\x01\x07\x7f chars\ufffdreplacement",
    "全角标点：，。！？【】《》“”‘’（）、；……——",
    "混合English和中文mixed在一起123abc",
    "Ⅱ①②③ ㊣ ﬁ ligature ＡＢＣａｂｃ１２３",
    "𠀀𠀁 rare CJK ext-B 𪚥 and 〇",
    "한국어 텍스트 日本語のテキスト カタカナ",
    "Привет мир! Ελληνικά العربية עברית हिन्दी ไทย",
    "https://news.example.com/2024/01/a_b-c.html?x=1&y=2#top",
    "user@example.com 3.14159 -42 1,000,000 50% $100 #tag @name",
    "'quotes' \"double\" `back` ~tilde^ |pipe| <angle> {brace} [bracket] \\back/slash",
    "数字１２３和ａｂｃ全角英文ＸＹＺ混排",
    "A" * 150 + " " + "b" * 99 + " " + "中" * 60,
    "长文本" * 400,
    " ".join(["word"] * 300),
]


def device_texts() -> list[str]:
    """The real texts (6,000, in file order) followed by the tricky ones."""
    texts = []
    for name, count in SOURCES:
        path = SHARED_DATA / name
        with path.open(encoding="utf-8") as lines:
            read = [json.loads(line)["text"] for line in islice(lines, count)]
        assert len(read) == count, f"{path} has {len(read)} texts, fewer than {count}"
        texts += read
    return texts + TRICKY_TEXTS


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """One JSON object per line, non-ASCII escaped (so no text holds a line break the JVM or Node would split on;
    their JSON readers undo the escapes)."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def training_texts(name: str, count: int) -> list[str]:
    """The first ``count`` training texts of a data set in ``SHARED_DATA``, to build a tokenizer from."""
    with (SHARED_DATA / name / "train.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in islice(lines, count)]
