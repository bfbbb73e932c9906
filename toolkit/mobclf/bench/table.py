"""One row type and one table renderer for every result mobclf reports: ``mobclf bench`` and the ``benchmarks/``
scripts.

A row is DESIGN.md's result row (``result_row``: what a row cannot have is None, never invented). A table is a list
of ``Column``s (header and cell text); ``markdown`` and ``html`` render the very same cells.

    rows = [result_row("teacher", "teacher", "bert", "eager", "fp32", metrics, params=..., size_bytes=...)]
    print(markdown("THUCNews", [NAME, MICRO_F1, SHARE_OF_TEACHER], rows, baseline=rows[0]))
"""

from __future__ import annotations

import html as html_text
from dataclasses import dataclass
from typing import Callable

FIELDS = ("name", "kind", "arch", "runtime", "precision", "micro_f1", "macro_f1", "accuracy",
          "agreement_with_teacher", "size_bytes", "params", "latency_ms_p50", "latency_ms_p95", "throughput_per_s")


def result_row(name: str, kind: str, arch: str, runtime: str, precision: str, metrics: dict, **fields) -> dict:
    """A result row from ``classification_metrics`` output and any further fields; DESIGN.md's fields a row cannot
    have are None."""
    return {**dict.fromkeys(FIELDS), "name": name, "kind": kind, "arch": arch, "runtime": runtime,
            "precision": precision, "micro_f1": metrics["micro_f1"], "macro_f1": metrics["macro_f1"],
            "accuracy": metrics["subset_accuracy"], **fields}


@dataclass(frozen=True)
class Column:
    """A table column: its header and its cell, from a row and the baseline row (None when there is none)."""

    header: str
    cell: Callable[[dict, dict | None], str]
    numeric: bool = True


def number(key: str, pattern: str = "{:.4f}") -> Callable[[dict, dict | None], str]:
    return lambda row, baseline: "—" if row.get(key) is None else pattern.format(row[key])


NAME = Column("model", lambda row, baseline: row["name"] + (" ⚠ parity FAILED" if row.get("parity_passed") is False
                                                            else "") + (
    f" ({100 * row['escalation_rate']:.1f}% escalated, mean {row['latency_ms_mean']:.2f} ms)"
    if row.get("escalation_rate") is not None else "") + (
    f" (left after {row['mean_exit_layer']:.2f} layers on average, mean {row['latency_ms_mean']:.2f} ms)"
    if row.get("mean_exit_layer") is not None else ""), numeric=False)
RUNTIME = Column("runtime", lambda row, baseline: row["runtime"], numeric=False)
WEIGHTS = Column("weights", lambda row, baseline: row["precision"], numeric=False)  # fp32, int8: not a metric
ACCURACY = Column("accuracy", number("accuracy"))
MICRO_F1 = Column("micro-F1", number("micro_f1"))
MACRO_F1 = Column("macro-F1", number("macro_f1"))
SHARE_OF_TEACHER = Column("% of teacher micro-F1", lambda row, baseline: "—" if not baseline else
                          f"{100 * row['micro_f1'] / baseline['micro_f1']:.1f}%")
AGREEMENT = Column("agreement with teacher", number("agreement_with_teacher"))
SIZE_MB = Column("size (MB)", lambda row, baseline: f"{row['size_bytes'] / 1e6:.2f}")
PARAMS = Column("params", number("params", "{:,}"))
LATENCY = Column("latency p50 / p95 (ms)", lambda row, baseline: "—" if row.get("latency_ms_p50") is None else
                 f"{row['latency_ms_p50']:.2f} / {row['latency_ms_p95']:.2f}")


def times_faster(latency_ms: float | None, baseline: dict | None) -> str:
    """How many times the baseline's (the teacher's) p50 latency is ``latency_ms``, e.g. "41×"."""
    if latency_ms is None or not baseline or baseline.get("latency_ms_p50") is None:
        return "—"
    return f"{baseline['latency_ms_p50'] / latency_ms:.{0 if baseline['latency_ms_p50'] >= 10 * latency_ms else 1}f}×"


FASTER_THAN_TEACHER = Column("× faster than teacher (p50)", lambda row, baseline: times_faster(
    row.get("latency_ms_p50"), baseline))
THROUGHPUT = Column("throughput (/s)", number("throughput_per_s", "{:.0f}"))
PEAK_RSS = Column("peak RSS (MB)", number("peak_rss_mb", "{:.0f}"))
MEMORY_ADDED = Column("memory added (MB)", number("peak_rss_over_baseline_mb", "{:.0f}"))
WALL_TIME = Column("wall time (s)", number("wall_time_s", "{}"))


def cells(columns: list[Column], rows: list[dict], baseline: dict | None) -> list[list[str]]:
    return [[column.cell(row, baseline) for column in columns] for row in rows]


def markdown(title: str, columns: list[Column], rows: list[dict], baseline: dict | None,
             notes: list[str] = (), level: int = 1, before: list[str] = ()) -> str:
    """The table in Markdown under a ``title`` heading of ``level``, ``before`` and ``notes`` as paragraphs before
    and after it."""
    lines = ["#" * level + f" {title}", ""]
    for paragraph in before:
        lines += [paragraph, ""]
    lines += ["| " + " | ".join(column.header for column in columns) + " |",
             "|" + "|".join("---:" if column.numeric else "---" for column in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells(columns, rows, baseline)]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def html(title: str, columns: list[Column], rows: list[dict], baseline: dict | None, before: str = "",
         after: str = "") -> str:
    """The same table as a standalone HTML page; ``before``/``after``: HTML around it (already escaped)."""
    return (f"<!doctype html><meta charset='utf-8'><title>{html_text.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:70em;margin:auto}td,th{padding:2px 8px;text-align:right}"
            "td:first-child{text-align:left}table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}"
            f"</style><h1>{html_text.escape(title)}</h1>{before}{html_table(columns, rows, baseline)}{after}")


def html_table(columns: list[Column], rows: list[dict], baseline: dict | None) -> str:
    """The table alone, as an HTML ``<table>`` (for a page with more than one)."""
    header = "".join(f"<th>{html_text.escape(column.header)}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{html_text.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in cells(columns, rows, baseline))
    return f"<table><tr>{header}</tr>{body}</table>"
