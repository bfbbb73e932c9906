"""Bad input to `mobclf data prepare`, one named case a row: the files a user might give (bytes, written by the
test), the arguments, and the refusal they must get (exit 2, one `Error:` line naming the file, the line and the fix,
no traceback, no user file touched; see ``tests/bad_inputs.py``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest

from bad_inputs import Refusal


def jsonl(*records) -> bytes:
    """JSON Lines, ASCII-escaped (so a lone surrogate stays an escape, as a user's file would have it)."""
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def rows(n: int = 4, labels=("sports", "finance", "games")) -> list[dict]:
    return [{"text": f"news {label} {i}", "labels": [label]} for label in labels for i in range(n)]


GOOD = jsonl(*rows())
CLASSES = "体育\n财经\n".encode()


@dataclass
class Case:
    files: dict[str, bytes]
    args: list[str]
    where: str | None
    line: int | None
    says: str
    marks: list = field(default_factory=list)
    unreadable: str | None = None  # a file of ``files`` whose permissions are taken away


CASES = {
    # --- encodings -------------------------------------------------------------------------------------------------
    "jsonl-lone-surrogate-in-text": Case(
        {"news.jsonl": GOOD + b'{"text": "bad \\ud800 text", "labels": ["x"]}\n'}, ["news.jsonl"], "news.jsonl", 13,
        "is not valid Unicode (lone surrogate \\ud800)"),
    "jsonl-lone-surrogate-in-label": Case(
        {"news.jsonl": b'{"text": "fine", "labels": ["ok", "\\udfff"]}\n' + GOOD}, ["news.jsonl"], "news.jsonl", 1,
        "is not valid Unicode (lone surrogate \\udfff)"),
    "jsonl-utf16-with-bom": Case(
        {"news.jsonl": GOOD.decode().encode("utf-16")}, ["news.jsonl"], "news.jsonl", 1, "iconv -f UTF-16 -t UTF-8"),
    "jsonl-utf16le-without-bom": Case(
        {"news.jsonl": GOOD.decode().encode("utf-16-le")}, ["news.jsonl"], "news.jsonl", 1,
        "iconv -f UTF-16 -t UTF-8"),
    "thucnews-utf16be-chinese-without-bom": Case(
        {"train.txt": "体育新闻一条很长的标题\t0\n财经新闻一条很长的标题\t1\n".encode("utf-16-be"), "class.txt": CLASSES},
        ["train.txt", "--class-file", "class.txt"], "train.txt", 1, "iconv -f UTF-16 -t UTF-8"),
    "csv-utf32": Case(
        {"news.csv": "text,labels\n体育新闻,体育\n".encode("utf-32")}, ["news.csv"], "news.csv", 1,
        "iconv -f UTF-32 -t UTF-8"),
    "class-file-utf16": Case(
        {"train.txt": "标题一\t0\n".encode(), "class.txt": CLASSES.decode().encode("utf-16")},
        ["train.txt", "--class-file", "class.txt"], "class.txt", 1, "iconv -f UTF-16 -t UTF-8"),
    "jsonl-nul-byte": Case(
        {"news.jsonl": GOOD + b'{"text": "a\x00b", "labels": ["x"]}\n'}, ["news.jsonl"], "news.jsonl", 13,
        "NUL byte: the file looks binary"),
    "jsonl-gb18030-bytes": Case(
        {"news.jsonl": GOOD + '{"text": "体育", "labels": ["x"]}\n'.encode("gb18030")}, ["news.jsonl"], "news.jsonl",
        13, "iconv -f GB18030 -t UTF-8"),
    "tsv-invalid-utf8-after-cr-only-lines": Case(
        {"news.tsv": b"text\tlabels\rone\tx\rtwo\ty\r\xff\tz\r"}, ["news.tsv"], "news.tsv", 4, "invalid UTF-8"),
    # --- JSON ------------------------------------------------------------------------------------------------------
    "jsonl-cr-only-error-on-line-3": Case(
        {"news.jsonl": b'{"text": "a", "labels": ["x"]}\r\r{"text": "b"}\r'}, ["news.jsonl"], "news.jsonl", 3,
        "missing field 'labels'"),
    "jsonl-huge-integer": Case(
        {"news.jsonl": GOOD + b'{"text": "a", "labels": ' + b"9" * 5000 + b"}\n"}, ["news.jsonl"], "news.jsonl", 13,
        "unreadable JSON"),
    "jsonl-nested-too-deeply": Case(
        {"news.jsonl": b"[" * 100_000 + b"\n" + GOOD}, ["news.jsonl"], "news.jsonl", 1, "nested too deeply"),
    "jsonl-array-not-object": Case(
        {"news.jsonl": GOOD + b'["text", "labels"]\n'}, ["news.jsonl"], "news.jsonl", 13, "expected a JSON object"),
    "jsonl-text-null": Case(
        {"news.jsonl": GOOD + b'{"text": null, "labels": ["x"]}\n'}, ["news.jsonl"], "news.jsonl", 13,
        "field 'text' must be a string, not NoneType"),
    "jsonl-labels-number": Case(
        {"news.jsonl": b'{"text": "a", "labels": 5}\n'}, ["news.jsonl"], "news.jsonl", 1,
        "labels must be a string or a list of strings"),
    "jsonl-missing-custom-field": Case(
        {"news.jsonl": GOOD}, ["news.jsonl", "--text-column", "title"], "news.jsonl", 1, "missing field 'title'"),
    "jsonl-empty-file": Case({"news.jsonl": b""}, ["news.jsonl"], "news.jsonl", None, "no rows"),
    "jsonl-blank-lines-only": Case({"news.jsonl": b"\n \r\n\t\n"}, ["news.jsonl"], "news.jsonl", None, "no rows"),
    # --- labels ----------------------------------------------------------------------------------------------------
    "jsonl-label-with-newline": Case(
        {"news.jsonl": GOOD + jsonl({"text": "a", "labels": ["a\nb"]})}, ["news.jsonl"], "news.jsonl", 13,
        "contains the control or line-break character U+000A"),
    "jsonl-label-with-line-separator": Case(
        {"news.jsonl": jsonl({"text": "a", "labels": ["ok", "a\u2028b"]}) + GOOD}, ["news.jsonl"], "news.jsonl", 1,
        "contains the control or line-break character U+2028"),
    "csv-quoted-label-with-bell": Case(
        {"news.csv": b'text,labels\nfine,x\nbad,"a\x07b"\n'}, ["news.csv"], "news.csv", 3,
        "contains the control or line-break character U+0007"),
    "csv-label-sep-leaves-empty-label": Case(
        {"news.csv": b"text,labels\nfine,x|y\nbad,x||y\n"}, ["news.csv", "--label-sep", "|"], "news.csv", 3,
        "empty label"),
    "thucnews-class-name-with-control-char": Case(
        {"train.txt": "标题一\t0\n".encode(), "class.txt": "体育\n财\x0b经\n".encode()},
        ["train.txt", "--class-file", "class.txt"], "class.txt", 2,
        "contains the control or line-break character U+000B"),
    "class-file-duplicate-name": Case(
        {"train.txt": "标题一\t0\n".encode(), "class.txt": "体育\n财经\n体育\n".encode()},
        ["train.txt", "--class-file", "class.txt"], "class.txt", 3, "repeats line 1"),
    "class-file-empty-line": Case(
        {"train.txt": "标题一\t0\n".encode(), "class.txt": "体育\n\n财经\n".encode()},
        ["train.txt", "--class-file", "class.txt"], "class.txt", 2, "empty class name"),
    "thucnews-unknown-label-id": Case(
        {"train.txt": "标题一\t0\r\n标题二\t2\r\n".encode(), "class.txt": CLASSES},
        ["train.txt", "--class-file", "class.txt"], "train.txt", 2, "unknown label id '2'"),
    "thucnews-huge-label-id": Case(
        {"train.txt": ("标题一\t" + "1" * 5000 + "\n").encode(), "class.txt": CLASSES},
        ["train.txt", "--class-file", "class.txt"], "train.txt", 1, f"unknown label id '{'1' * 20}...'"),
    "thucnews-without-class-file": Case(
        {"train.txt": "标题一\t0\n".encode()}, ["train.txt"], "train.txt", None, "--class-file"),
    "thucnews-text-with-tab": Case(
        {"train.txt": "标题\t一\t0\n".encode(), "class.txt": CLASSES}, ["train.txt", "--class-file", "class.txt"],
        "train.txt", 1, "3 tab-separated fields"),
    # --- CSV / TSV -------------------------------------------------------------------------------------------------
    "csv-header-only": Case({"news.csv": b"text,labels\n"}, ["news.csv"], "news.csv", 2, "no rows after the header"),
    "csv-empty-file": Case({"news.csv": b""}, ["news.csv"], "news.csv", 1, "no column 'text'"),
    "csv-unclosed-quote": Case(
        {"news.csv": b'text,labels\nfine,x\n"never closed,x\nmore,y\n'}, ["news.csv"], "news.csv", 3,
        "malformed row"),
    "csv-duplicate-text-column": Case(
        {"news.csv": b"text,labels,text\na,x,b\n"}, ["news.csv"], "news.csv", 1, "names column 'text' 2 times"),
    "csv-unquoted-comma": Case(
        {"news.csv": b"text,labels\nfine,x\nhello, world,x\n"}, ["news.csv"], "news.csv", 3,
        "quote fields that contain ','"),
    "tsv-quotes-do-not-hide-a-tab": Case(
        {"news.tsv": b'text\tlabels\nfine\tx\n"a\tb"\tx\n'}, ["news.tsv"], "news.tsv", 3, "TSV has no quoting"),
    "tsv-cr-only-missing-field": Case(
        {"news.tsv": b"text\tlabels\rone\tx\r\rtwo\r"}, ["news.tsv"], "news.tsv", 4, "1 fields, but the header has 2"),
    # --- several files, splits, labels -----------------------------------------------------------------------------
    "val-file-malformed": Case(
        {"train.jsonl": GOOD, "val.jsonl": GOOD[:40] + b"\n"}, ["--train", "train.jsonl", "--val", "val.jsonl"],
        "val.jsonl", 1, "malformed JSON"),
    "test-file-empty": Case(
        {"train.jsonl": GOOD, "test.jsonl": b"\n"}, ["--train", "train.jsonl", "--test", "test.jsonl"], "test.jsonl",
        None, "no rows"),
    "val-labels-unknown-to-train": Case(
        {"train.jsonl": GOOD, "val.jsonl": jsonl(*rows(2, ["weather", "travel"]))},
        ["--train", "train.jsonl", "--val", "val.jsonl"], "val.jsonl", None,
        "no row keeps a label: its labels ('travel', 'weather') have no example in the training data train.jsonl"),
    "class-file-with-jsonl": Case(
        {"news.jsonl": GOOD, "class.txt": CLASSES}, ["news.jsonl", "--class-file", "class.txt"], "class.txt", None,
        "--class-file is only for THUCNews"),
    "unknown-extension": Case({"news.xml": GOOD}, ["news.xml"], "news.xml", None, "pass --format"),
    "directory-as-input": Case({"news/a.jsonl": GOOD}, ["news"], "news", None, "is a directory"),
    "rare-single-label": Case(
        {"news.jsonl": GOOD + jsonl({"text": "lonely", "labels": ["rare"]})}, ["news.jsonl"], "news.jsonl", 13,
        "pass --min-label-count 3"),
    "1200-single-label-classes": Case(
        {"news.jsonl": jsonl(*rows(3, [f"class{i}" for i in range(1200)]))}, ["news.jsonl"], "news.jsonl", None,
        "give --val and --test as files, or raise the test share of --split"),
    "one-label-only": Case(
        {"news.jsonl": jsonl(*rows(5, ["only"]))}, ["news.jsonl"], "news.jsonl", None,
        "has 1 label(s) ['only'], a classifier needs two or more"),
    "min-label-count-drops-all-but-one": Case(
        {"news.jsonl": jsonl(*rows(9, ["big"]), *rows(4))}, ["news.jsonl", "--min-label-count", "5"], "news.jsonl",
        None, "1 label(s) left to learn after filtering, a classifier needs two or more; lower --min-label-count"),
    "multi-label-carved-split-empty": Case(
        {"news.jsonl": jsonl(*({"text": f"t{i}", "labels": [f"only{i}", "ab"[i % 2]]} for i in range(20)))},
        ["news.jsonl"], "news.jsonl", None, "split carved from it is empty"),
    "unreadable-file": Case(
        {"news.jsonl": GOOD}, ["news.jsonl"], "news.jsonl", None, "cannot read the file",
        [pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file without read permission")], "news.jsonl"),
}


@pytest.mark.parametrize("case", [pytest.param(case, id=name, marks=case.marks) for name, case in CASES.items()])
def test_data_prepare_refuses(tmp_path, case):
    for name, content in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    if case.unreadable:
        os.chmod(tmp_path / case.unreadable, 0)
    Refusal(["data", "prepare", *case.args, "--out", "ds"], where=case.where, line=case.line,
            says=case.says).check(tmp_path)
