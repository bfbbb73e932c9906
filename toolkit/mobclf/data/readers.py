"""Readers for labelled news text: JSON Lines, CSV/TSV and the THUCNews ``text<TAB>label_id`` layout.

Every reader returns :class:`Row` objects that remember their file and 1-based line, so later checks can point at
the place to fix. Bad input raises :class:`~mobclf.errors.UserError` naming the file, the line and the fix.

    rows = read_labelled(Path("news.csv"), text_column="title", label_column="tags", label_sep="|")
"""

from __future__ import annotations

import csv
import io
import json
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


def read_text_file(path: Path) -> str:
    """The whole file decoded as UTF-8 (a BOM is allowed); invalid bytes are reported with their line."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"cannot read the file ({err.strerror}); check the path", path=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(
            f"invalid UTF-8 (byte 0x{data[err.start]:02x}); convert the file to UTF-8, "
            "e.g. `iconv -f GB18030 -t UTF-8`",
            path=path,
            line=line,
        ) from None


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-blank lines. Splits on newlines only: JSON strings may hold U+2028 and friends."""
    numbered = enumerate(read_text_file(path).split("\n"), start=1)
    return [(number, line.rstrip("\r")) for number, line in numbered if line.strip()]


def _check_text(value: object, what: str, path: Path, line: int) -> str:
    if not isinstance(value, str):
        raise UserError(f"{what} must be a string, not {type(value).__name__}", path=path, line=line)
    if not value.strip():
        raise UserError("empty text; fill it in or remove the line", path=path, line=line)
    return value


def _check_labels(values: object, path: Path, line: int) -> tuple[str, ...]:
    """Stripped, de-duplicated label names (order kept); at least one is required."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise UserError("labels must be a string or a list of strings", path=path, line=line)
    labels = tuple(dict.fromkeys(value.strip() for value in values))
    if not labels or "" in labels:
        raise UserError("empty label; give every row at least one non-empty label or remove it", path=path, line=line)
    return labels


def read_jsonl(path: Path, text_field: str = "text", label_field: str | None = "labels") -> list[Row]:
    """Rows of a JSON Lines file; ``labels`` may be a list or a single string. ``label_field=None`` reads texts only."""
    rows = []
    for number, line in read_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(
                f"malformed JSON ({err.msg}, column {err.colno}); each line must be one JSON object",
                path=path,
                line=number,
            ) from None
        if not isinstance(record, dict):
            raise UserError("expected a JSON object on each line", path=path, line=number)
        for field in (text_field, label_field):
            if field is not None and field not in record:
                raise UserError(f"missing field {field!r}; every line needs it (or pass --text-column/--label-column)",
                                path=path, line=number)
        text = _check_text(record[text_field], f"field {text_field!r}", path, number)
        labels = _check_labels(record[label_field], path, number) if label_field else ()
        rows.append(Row(text, labels, Path(path), number))
    return rows


def read_csv(
    path: Path, delimiter: str = ",", text_column: str = "text", label_column: str = "labels",
    label_sep: str | None = None,
) -> list[Row]:
    """Rows of a CSV/TSV file with a header row; ``label_sep`` splits a multi-label cell (``None``: one label)."""
    reader = csv.reader(io.StringIO(read_text_file(path), newline=""), delimiter=delimiter, strict=True)
    rows = []
    line = 1
    try:
        header = [name.strip() for name in next(reader, [])]
        for column in (text_column, label_column):
            if column not in header:
                raise UserError(
                    f"no column {column!r} in the header ({', '.join(header) or 'empty'}); a header row is required, "
                    "pass --text-column/--label-column to name the columns",
                    path=path,
                    line=1,
                )
        line = reader.line_num + 1
        for record in reader:
            if record:
                if len(record) != len(header):
                    raise UserError(
                        f"{len(record)} fields, but the header has {len(header)}; "
                        f"quote fields that contain {delimiter!r} or newlines",
                        path=path,
                        line=line,
                    )
                text = _check_text(record[header.index(text_column)], f"column {text_column!r}", path, line)
                cell = record[header.index(label_column)]
                labels = _check_labels(cell.split(label_sep) if label_sep else cell, path, line)
                rows.append(Row(text, labels, Path(path), line))
            line = reader.line_num + 1
    except csv.Error as err:
        raise UserError(f"malformed row ({err}); check the quoting", path=path, line=line) from None
    return rows


def read_class_file(path: Path) -> list[str]:
    """Label names of a THUCNews ``class.txt``: one per line, in id order."""
    names = [line.strip() for line in read_text_file(path).rstrip().split("\n")]
    for number, name in enumerate(names, start=1):
        if not name:
            raise UserError("empty class name; the class file needs one name per line, in id order",
                            path=path, line=number)
        if names.index(name) != number - 1:
            raise UserError(f"class name {name!r} repeats line {names.index(name) + 1}; names must be unique",
                            path=path, line=number)
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
        label_index = int(label_id) if label_id.strip().isdecimal() else -1
        if not 0 <= label_index < len(class_names):
            raise UserError(
                f"unknown label id {label_id!r}; the class file lists ids 0-{len(class_names) - 1}: "
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
