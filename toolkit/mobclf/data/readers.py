"""Readers for labelled news text: JSON Lines, CSV/TSV and the THUCNews ``text<TAB>label_id`` layout.

Every reader returns :class:`Row` objects that remember their file and 1-based line, so later checks can point at
the place to fix. Bad input raises :class:`~mobclf.errors.UserError` naming the file, the line and the fix. Files
are UTF-8 (UTF-16/32 and binary files are refused with the conversion to run); lines may end in CR LF, LF or CR.

    rows = read_labelled(Path("news.csv"), text_column="title", label_column="tags", label_sep="|")
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from mobclf.errors import UserError

FORMATS = ("jsonl", "csv", "tsv", "thucnews")
_FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "thucnews"}


@dataclass(frozen=True)
class Row:
    """One labelled text and where it came from (``line`` is 1-based; for CSV the line the record starts on)."""

    text: str
    labels: tuple[str, ...]
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def detect_format(path: Path) -> str:
    """The format implied by the file extension: .jsonl/.json, .csv, .tsv, .txt (THUCNews)."""
    fmt = _FORMAT_BY_EXTENSION.get(Path(path).suffix.lower())
    if fmt is None:
        raise UserError(f"cannot tell the format from the extension; pass --format ({'|'.join(FORMATS)})", path=path)
    return fmt


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
              (codecs.BOM_UTF16_BE, "UTF-16"))


def split_lines(text: str) -> list[str]:
    """Lines split at \\r\\n, \\r (old Mac) or \\n only, never at U+2028, \\x1c and the other breaks of
    ``str.splitlines``: JSON strings may hold those."""
    return _LINE_BREAK.split(text)


def _wide_encoding(data: bytes) -> str | None:
    """"UTF-16" or "UTF-32" when the bytes look like it: a BOM, or the NUL bytes that ASCII letters, digits, tabs
    and newlines leave in those encodings (in every other position of UTF-16, in 2 of 4 of UTF-32)."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            return name
    head = data[: min(len(data), 4096) // 4 * 4]
    if len(head) < 4:
        return None
    share = [head[offset::4].count(0) / (len(head) // 4) for offset in range(4)]
    if share.count(1.0) == 2 and (share[0] == share[1] == 1.0 or share[2] == share[3] == 1.0):
        return "UTF-32"
    even, odd = head[0::2].count(0), head[1::2].count(0)  # UTF-16 of CJK has some NULs on the other side (U+4E00)
    if max(even, odd) >= max(4, len(head) // 20) and min(even, odd) <= max(even, odd) / 2:
        return "UTF-16"
    return None


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset``, counting \\r\\n, \\r and \\n as one line break each."""
    return len(_LINE_BREAK.findall(data[:offset].decode("utf-8", "replace"))) + 1


def read_text_file(path: Path) -> str:
    """The whole file decoded as UTF-8 (a BOM is allowed); invalid bytes are reported with their line.

    UTF-16/UTF-32 files (by their BOM, or NUL bytes between ASCII letters) and files with NUL bytes (binary files)
    are refused with the command that converts them.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"cannot read the file ({err.strerror or err}); check the path and its permissions",
                        path=path) from None
    return decode(data, path)


def decode(data: bytes, path: Path | str) -> str:
    """``data`` (the bytes of ``path``, a file or ``<stdin>``) as text, as :func:`read_text_file` reads a file."""
    wide = _wide_encoding(data)
    if wide:
        raise UserError(f"the file is {wide}, not UTF-8; convert it, e.g. `iconv -f {wide} -t UTF-8 IN > OUT`",
                        path=path, line=1)
    if b"\0" in data:
        raise UserError("NUL byte: the file looks binary, not UTF-8 text; give a UTF-8 text file or remove the NUL",
                        path=path, line=_line_of(data, data.index(b"\0")))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(
            f"invalid UTF-8 (byte 0x{data[err.start]:02x}); convert the file to UTF-8, "
            "e.g. `iconv -f GB18030 -t UTF-8 IN > OUT`",
            path=path,
            line=_line_of(data, err.start),
        ) from None


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-blank lines, split at \\r\\n, \\r or \\n (see :func:`split_lines`)."""
    numbered = enumerate(split_lines(read_text_file(path)), start=1)
    return [(number, line) for number, line in numbered if line.strip()]


def _unicode_problem(value: str) -> str | None:
    """Why ``value`` cannot be written as UTF-8: a lone surrogate (from a JSON escape such as "\\ud800")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"lone surrogate \\u{ord(value[err.start]):04x}"
    return None


def _check_text(value: object, what: str, path: Path, line: int, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise UserError(f"{what} must be a string, not {type(value).__name__}", path=path, line=line)
    if not value.strip() and not empty_ok:
        raise UserError("empty text; fill it in or remove the line", path=path, line=line)
    problem = _unicode_problem(value)
    if problem:
        raise UserError(f"{what} is not valid Unicode ({problem}); fix the escape or remove the line",
                        path=path, line=line)
    return value


def _label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a label name: it would not survive labels.txt (one name a line) or UTF-8."""
    problem = _unicode_problem(label)
    if problem:
        return f"is not valid Unicode ({problem})"
    for char in label:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"contains the control or line-break character U+{ord(char):04X}"
    return None


def _check_labels(values: object, path: Path, line: int) -> tuple[str, ...]:
    """Stripped, de-duplicated label names (order kept); at least one is required."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise UserError("labels must be a string or a list of strings", path=path, line=line)
    labels = tuple(dict.fromkeys(value.strip() for value in values))
    if not labels or "" in labels:
        raise UserError("empty label; give every row at least one non-empty label or remove it", path=path, line=line)
    for label in labels:
        problem = _label_problem(label)
        if problem:
            raise UserError(f"label {label!r} {problem}; label names are one line of printable text, fix the label",
                            path=path, line=line)
    return labels


def read_jsonl(path: Path, text_field: str = "text", label_field: str | None = "labels", *,
               content: str | None = None, empty_ok: bool = False) -> list[Row]:
    """Rows of a JSON Lines file; ``labels`` may be a list or a single string. ``label_field=None`` reads texts only;
    ``content``: the file's text, already read (e.g. stdin); ``empty_ok``: an empty text is a text, not a mistake."""
    rows = []
    lines = read_lines(path) if content is None else [
        (number, line) for number, line in enumerate(split_lines(content), start=1) if line.strip()]
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(
                f"malformed JSON ({err.msg}, column {err.colno}); each line must be one JSON object",
                path=path,
                line=number,
            ) from None
        except (ValueError, RecursionError) as err:  # a number of over 4300 digits, nesting too deep
            reason = "nested too deeply" if isinstance(err, RecursionError) else str(err).split(";")[0]
            raise UserError(f"unreadable JSON ({reason}); each line must be one JSON object of text and labels",
                            path=path, line=number) from None
        if not isinstance(record, dict):
            raise UserError("expected a JSON object on each line", path=path, line=number)
        for field in (text_field, label_field):
            if field is not None and field not in record:
                raise UserError(f"missing field {field!r}; every line needs it (or pass --text-column/--label-column)",
                                path=path, line=number)
        text = _check_text(record[text_field], f"field {text_field!r}", path, number, empty_ok)
        labels = _check_labels(record[label_field], path, number) if label_field else ()
        rows.append(Row(text, labels, Path(path), number))
    return rows


def read_csv(
    path: Path, delimiter: str = ",", text_column: str = "text", label_column: str | None = "labels",
    label_sep: str | None = None, *, content: str | None = None, empty_ok: bool = False,
) -> list[Row]:
    """Rows of a CSV/TSV file with a header row; ``label_sep`` splits a multi-label cell (``None``: one label);
    ``label_column=None`` reads texts only, ``content`` and ``empty_ok`` as for :func:`read_jsonl`.

    CSV fields may be quoted (RFC 4180). TSV (``delimiter="\\t"``) has no quoting: quotes are kept as they are,
    and a text cannot hold a tab or a line break. Lines may end in \\r\\n, \\n or \\r.
    """
    tsv = delimiter == "\t"
    quoting = {"quoting": csv.QUOTE_NONE} if tsv else {}
    text = read_text_file(path) if content is None else content
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True, **quoting)
    fix = ("TSV has no quoting, so a text cannot hold a tab or a line break: replace them with spaces" if tsv else
           f"quote fields that contain {delimiter!r} or line breaks")
    rows = []
    line = 1
    try:
        header = [name.strip() for name in next(reader, [])]
        for column in (text_column, label_column) if label_column else (text_column,):
            if column not in header:
                raise UserError(
                    f"no column {column!r} in the header ({', '.join(header) or 'empty'}); a header row is required, "
                    "pass --text-column/--label-column to name the columns",
                    path=path,
                    line=1,
                )
            if header.count(column) > 1:
                raise UserError(f"the header names column {column!r} {header.count(column)} times; rename the others",
                                path=path, line=1)
        line = reader.line_num + 1
        for record in reader:
            if record:
                if len(record) != len(header):
                    raise UserError(f"{len(record)} fields, but the header has {len(header)}; {fix}",
                                    path=path, line=line)
                text = _check_text(record[header.index(text_column)], f"column {text_column!r}", path, line, empty_ok)
                cell = record[header.index(label_column)] if label_column else None
                labels = _check_labels(cell.split(label_sep) if label_sep else cell, path, line) if label_column \
                    else ()
                rows.append(Row(text, labels, Path(path), line))
            line = reader.line_num + 1
    except csv.Error as err:
        raise UserError(f"malformed row ({err}); check the quoting", path=path, line=line) from None
    if not rows:
        raise UserError("no rows after the header; add rows below it", path=path, line=line)
    return rows


def read_class_file(path: Path) -> list[str]:
    """Label names of a THUCNews ``class.txt``: one per line, in id order."""
    names = [line.strip() for line in split_lines(read_text_file(path).rstrip())]
    for number, name in enumerate(names, start=1):
        if not name:
            raise UserError("empty class name; the class file needs one name per line, in id order",
                            path=path, line=number)
        if names.index(name) != number - 1:
            raise UserError(f"class name {name!r} repeats line {names.index(name) + 1}; names must be unique",
                            path=path, line=number)
        problem = _label_problem(name)
        if problem:
            raise UserError(f"class name {name!r} {problem}; give one printable name per line", path=path,
                            line=number)
    return names


def read_thucnews(path: Path, class_names: list[str]) -> list[Row]:
    """Rows of a THUCNews file: ``text<TAB>label_id`` lines, ids indexing ``class_names``."""
    rows = []
    for number, line in read_lines(path):
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{len(fields)} tab-separated fields, expected 2 (text<TAB>label_id)",
                            path=path, line=number)
        text, label_id = fields
        _check_text(text, "text", path, number)
        digits = label_id.strip()
        label_index = int(digits) if digits.isdecimal() and len(digits) < 10 else -1
        if not 0 <= label_index < len(class_names):
            raise UserError(
                f"unknown label id {label_id if len(label_id) <= 20 else label_id[:20] + '...'!r}; "
                f"the class file lists ids 0-{len(class_names) - 1}: "
                "fix the id or pass the right --class-file",
                path=path,
                line=number,
            )
        rows.append(Row(text, (class_names[label_index],), Path(path), number))
    return rows


def read_labelled(
    path: Path, fmt: str | None = None, *, text_column: str = "text", label_column: str = "labels",
    label_sep: str | None = None, class_names: list[str] | None = None,
) -> list[Row]:
    """Rows of one labelled file in ``fmt`` (detected from the extension when ``None``); refuses an empty file."""
    fmt = fmt or detect_format(path)
    if fmt == "thucnews":
        if class_names is None:
            raise UserError("THUCNews text<TAB>label_id files need --class-file (label names, one per line, "
                            "in id order)", path=path)
        rows = read_thucnews(path, class_names)
    elif fmt == "jsonl":
        rows = read_jsonl(path, text_column, label_column)
    elif fmt in ("csv", "tsv"):
        rows = read_csv(path, "\t" if fmt == "tsv" else ",", text_column, label_column, label_sep)
    else:
        raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", path=path)
    if not rows:
        raise UserError("no rows; the file is empty", path=path)
    return rows
