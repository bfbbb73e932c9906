"""``mobclf predict``: classify texts with any model, in the runtime it ships in — the answer the phone gives.

The model is any model artifact (teacher, student, pruned, quantized) or export bundle, opened by
``bench.variants.open_model``: eager PyTorch, the ExecuTorch runtime (``.pte``) or onnxruntime (``.onnx``), with its
own tokenizer, thresholds and decision rule (argmax for a single-label model; for a multi-label one every label at or
above its threshold, the most probable one when none is). An empty text gets what the model answers for the
tokenizer's empty encoding.

    records = run(PredictConfig(top_k=3), Path("bundle"), ["央行宣布下调存款准备金率", "国足客场逼平对手"])
    # [{"text": "...", "labels": ["财经"], "probabilities": {"财经": 0.93, "股票": 0.41, "体育": 0.02}}, ...]

Texts come from ``read_texts``: JSON Lines (a ``text`` field, or ``text_column``) and CSV/TSV with a header
(``text_column``), read by ``data.readers`` as ``data prepare`` reads them (texts only), or plain text, one text per line (every line, an empty one too, so output line n answers input
line n). Records go out as JSON Lines (``write_jsonl``: atomically, never over an existing file unless ``force``) or
as a table for a terminal (``table``).
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from mobclf.artifacts import atomic_file
from mobclf.data.readers import decode, read_csv, read_jsonl, read_text_file, split_lines
from mobclf.errors import UserError
from mobclf.stages import PredictConfig

INPUT_FORMATS = ("jsonl", "csv", "tsv", "txt")
_FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "txt"}
STDIN = "<stdin>"
TABLE_MAX_TEXTS = 20  # a terminal gets a table for this many texts at most, JSON Lines beyond


def run(config: PredictConfig, model_dir: Path, texts: list[str], progress: bool = False) -> list[dict]:
    """One record per text, in order: ``{"text", "labels" (chosen, most probable first), "probabilities"
    ({label: p}, most probable first; every label, or the ``top_k`` most probable)}``. ``progress``: a rich
    progress bar (for files)."""
    from mobclf.bench.variants import open_model

    model = open_model(model_dir, config.file, config.device)
    answers = model.answer(list(texts), config.batch_size, description="predicting" if progress else None)
    records = []
    for number, (text, row, picks) in enumerate(zip(texts, answers.probs, answers.choices)):
        order = sorted(range(len(model.labels)), key=lambda index: -row[index])
        records.append({"text": text, "labels": [model.labels[index] for index in order if picks[index]],
                        "probabilities": {model.labels[index]: round(float(row[index]), 6)
                                          for index in order[:config.top_k]}})
        if answers.escalated is not None:
            records[-1]["answered_by"] = "accurate" if answers.escalated[number] else "fast"
        if answers.exit_layers is not None:
            records[-1]["exit_layer"] = int(answers.exit_layers[number])
    return records


# ---- reading texts -----------------------------------------------------------------------------------------------

def input_format(path: Path | None, fmt: str | None) -> str:
    """``fmt``, or the one the extension implies; stdin (``path`` None) is plain text unless ``fmt`` says otherwise."""
    if fmt is not None:
        if fmt not in INPUT_FORMATS:
            raise UserError(f"unknown input format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}")
        return fmt
    if path is None:
        return "txt"
    detected = _FORMAT_BY_EXTENSION.get(Path(path).suffix.lower())
    if detected is None:
        raise UserError(f"cannot tell the format from the extension; pass --format ({'|'.join(INPUT_FORMATS)})",
                        path=path)
    return detected


def parse_texts(content: str, fmt: str, where: str, text_column: str = "text") -> list[str]:
    """The texts in ``content`` (the decoded input named ``where``), read as ``fmt`` by the readers ``data prepare``
    uses, texts only; an empty text is a text here (the model answers it)."""
    if fmt == "txt":
        lines = split_lines(content)
        if lines and lines[-1] == "":
            lines.pop()  # the line break that ends the last line starts no new text
        return lines
    if fmt == "jsonl":
        rows = read_jsonl(where, text_column, None, content=content, empty_ok=True)
    elif fmt in ("csv", "tsv"):
        rows = read_csv(where, "\t" if fmt == "tsv" else ",", text_column, None, content=content, empty_ok=True)
    else:
        raise UserError(f"unknown input format {fmt!r}; use one of {', '.join(INPUT_FORMATS)}")
    return [row.text for row in rows]


def read_texts(path: Path | None, fmt: str | None = None, text_column: str = "text", stdin: bytes | None = None
               ) -> list[str]:
    """Texts of the file ``path``, or of ``stdin`` (its bytes) when ``path`` is None; refuses an input without any."""
    fmt = input_format(path, fmt)
    if path is None:
        where, content = STDIN, decode(stdin or b"", STDIN)
    else:
        where = str(path)
        if Path(path).is_dir():
            raise UserError("is a folder; give a file of texts (.jsonl, .csv, .tsv or .txt)", path=path)
        content = read_text_file(Path(path))
    texts = parse_texts(content, fmt, where, text_column)
    if not texts:
        raise UserError("no texts to classify: the input is empty", path=where)
    return texts


def check_texts(texts: list[str]) -> list[str]:
    """Texts given as command-line arguments, checked to be writable as UTF-8."""
    for number, text in enumerate(texts, start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"TEXT argument {number} is not valid UTF-8; give UTF-8 text or use --input FILE") \
                from None
    return list(texts)


# ---- writing records ---------------------------------------------------------------------------------------------

def check_output(output: Path, force: bool) -> None:
    """Refuse an ``output`` that exists (unless ``force``), is a folder, or has no folder to go into — before any
    work is done."""
    output = Path(output)
    if output.is_dir():
        raise UserError("is a folder; give a file name for --output", path=output)
    if (output.exists() or output.is_symlink()) and not force:
        raise UserError("already exists; pass --force to replace it or choose another --output", path=output)
    if not output.parent.is_dir():
        raise UserError("its folder does not exist; create it or choose another --output", path=output)


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def write_jsonl(records: list[dict], output: Path, force: bool = False) -> None:
    """``records`` as JSON Lines in ``output``, atomically: a hidden temporary file in the same folder, synced, then
    renamed over ``output`` (which only ``force`` lets be replaced)."""
    output = Path(output)
    check_output(output, force)
    with atomic_file(output) as handle:
        handle.write(jsonl(records))


def table(records: list[dict], width: int = 60) -> Table:
    """The records for a person at a terminal: text, chosen labels, the three most probable labels."""
    view = Table(show_lines=False)
    view.add_column("text", overflow="fold")
    view.add_column("labels")
    view.add_column("most probable", justify="right")
    for record in records:
        text = record["text"] if len(record["text"]) <= width else record["text"][:width - 1] + "…"
        top = list(record["probabilities"].items())[:3]
        view.add_row(Text(text) if text else Text("(empty)", style="dim"), Text(", ".join(record["labels"])),
                     Text("  ".join(f"{label} {p:.3f}" for label, p in top)))
    return view
