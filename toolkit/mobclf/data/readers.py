"""Readers for labelled news text: JSON Lines, CSV/TSV and the THUCNews ``text<TAB>label_id`` layout.

Every reader yields :class:`Row` objects that remember their file and 1-based line, so later checks can point at
the place to fix, reading the file a line at a time (a file of any size costs one row). Bad input raises
:class:`~mobclf.errors.UserError` naming the file, the line and the fix. Files are UTF-8 (UTF-16/32 and binary files
are refused with the conversion to run); lines may end in CR LF, LF or CR.

    rows = read_labelled(Path("news.csv"), text_column="title", label_column="tags", label_sep="|")
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mobclf.errors import UserError

FORMATS = ("jsonl", "csv", "tsv", "thucnews")
_FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "thucnews"}


@dataclass(frozen=True, slots=True)
class Row:
    """One labelled text and where it came from (``line`` is 1-based; for CSV the line the record starts on)."""

    text: str
    labels: tuple[str, ...]
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def text_digest(text: str) -> str:
    """A 16-byte BLAKE2b of ``text`` in hex: what a reader keeps per text to find repeated ones, or to check that a
    second pass over a file reads what the first did."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


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


def _cannot_read(path: Path, err: OSError) -> UserError:
    return UserError(f"cannot read the file ({err.strerror or err}); check the path and its permissions", path=path)


def _check_bytes(data: bytes, path: Path | str, first_line: int = 1) -> str:
    """``data`` (lines of ``path`` from ``first_line`` on, or all of it) decoded, or the one-line refusal of a
    binary file or invalid UTF-8 naming its line."""
    if b"\0" in data:
        raise UserError("NUL byte: the file looks binary, not UTF-8 text; give a UTF-8 text file or remove the NUL",
                        path=path, line=first_line - 1 + _line_of(data, data.index(b"\0")))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"invalid UTF-8 (byte 0x{data[err.start]:02x}); convert the file to UTF-8, "
            "e.g. `iconv -f GB18030 -t UTF-8 IN > OUT`",
            path=path,
            line=first_line - 1 + _line_of(data, err.start),
        ) from None


def _refuse_wide(head: bytes, path: Path | str) -> None:
    wide = _wide_encoding(head)
    if wide:
        raise UserError(f"the file is {wide}, not UTF-8; convert it, e.g. `iconv -f {wide} -t UTF-8 IN > OUT`",
                        path=path, line=1)


def read_text_file(path: Path) -> str:
    """The whole file decoded as UTF-8 (a BOM is allowed); invalid bytes are reported with their line.

    UTF-16/UTF-32 files (by their BOM, or NUL bytes between ASCII letters) and files with NUL bytes (binary files)
    are refused with the command that converts them.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise _cannot_read(path, err) from None
    return decode(data, path)


def decode(data: bytes, path: Path | str) -> str:
    """``data`` (the bytes of ``path``, a file or ``<stdin>``) as text, as :func:`read_text_file` reads a file."""
    _refuse_wide(data, path)
    return _check_bytes(data.removeprefix(codecs.BOM_UTF8), path)


def numbered_lines(path: Path, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """Every line of a UTF-8 file with its 1-based number, read a line at a time: split at \\r\\n, \\r or \\n
    (see :func:`split_lines`) and refused as :func:`read_text_file` refuses the whole file, at the same line.
    ``keep_ends``: each line with the break that ends it (what ``csv`` needs for breaks inside quotes)."""
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise _cannot_read(path, err) from None
    with handle:
        _refuse_wide(handle.read(4096), path)
        handle.seek(0)
        number = 1
        for chunk in handle:  # up to and with a \n; old-Mac \r breaks are split below
            text = _check_bytes(chunk.removeprefix(codecs.BOM_UTF8) if number == 1 else chunk, path, number)
            ending = "\r\n" if text.endswith("\r\n") else "\n" if text.endswith("\n") else ""
            lines = text[:len(text) - len(ending)].split("\r")
            for position, line in enumerate(lines, start=1):
                yield number, (line + ("\r" if position < len(lines) else ending) if keep_ends else line)
                number += 1


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered non-blank lines, split at \\r\\n, \\r or \\n (see :func:`split_lines`)."""
    return ((number, line) for number, line in numbered_lines(path) if line.strip())


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
               content: str | None = None, empty_ok: bool = False) -> Iterator[Row]:
    """Rows of a JSON Lines file; ``labels`` may be a list or a single string. ``label_field=None`` reads texts only;
    ``content``: the file's text, already read (e.g. stdin); ``empty_ok``: an empty text is a text, not a mistake."""
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
        yield Row(text, labels, Path(path), number)


def read_csv(
    path: Path, delimiter: str = ",", text_column: str = "text", label_column: str | None = "labels",
    label_sep: str | None = None, *, content: str | None = None, empty_ok: bool = False,
) -> Iterator[Row]:
    """Rows of a CSV/TSV file with a header row; ``label_sep`` splits a multi-label cell (``None``: one label);
    ``label_column=None`` reads texts only, ``content`` and ``empty_ok`` as for :func:`read_jsonl`.

    CSV fields may be quoted (RFC 4180). TSV (``delimiter="\\t"``) has no quoting: quotes are kept as they are,
    and a text cannot hold a tab or a line break. Lines may end in \\r\\n, \\n or \\r.
    """
    tsv = delimiter == "\t"
    quoting = {"quoting": csv.QUOTE_NONE} if tsv else {}
    lines = (line for _, line in numbered_lines(path, keep_ends=True)) if content is None else io.StringIO(
        content, newline="")
    reader = csv.reader(lines, delimiter=delimiter, strict=True, **quoting)
    fix = ("TSV has no quoting, so a text cannot hold a tab or a line break: replace them with spaces" if tsv else
           f"quote fields that contain {delimiter!r} or line breaks")
    count, line = 0, 1
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
                yield Row(text, labels, Path(path), line)
                count += 1
            line = reader.line_num + 1
    except csv.Error as err:
        raise UserError(f"malformed row ({err}); check the quoting", path=path, line=line) from None
    if not count:
        raise UserError("no rows after the header; add rows below it", path=path, line=line)


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


def read_thucnews(path: Path, class_names: list[str]) -> Iterator[Row]:
    """Rows of a THUCNews file: ``text<TAB>label_id`` lines, ids indexing ``class_names``."""
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
        yield Row(text, (class_names[label_index],), Path(path), number)


def read_labelled(path: Path, fmt: str | None = None, **options) -> list[Row]:
    """The rows of :func:`iter_labelled`, as a list."""
    return list(iter_labelled(path, fmt, **options))


def iter_labelled(
    path: Path, fmt: str | None = None, *, text_column: str = "text", label_column: str = "labels",
    label_sep: str | None = None, class_names: list[str] | None = None,
) -> Iterator[Row]:
    """Rows of one labelled file in ``fmt`` (detected from the extension when ``None``), a line at a time; refuses
    an empty file (after its last line)."""
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
    empty = True
    for row in rows:
        empty = False
        yield row
    if empty:
        raise UserError("no rows; the file is empty", path=path)
