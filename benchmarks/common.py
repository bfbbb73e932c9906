"""What the benchmark scripts share: reuse-or-run of artifacts, result rows in DESIGN.md's format, the TF-IDF
baseline rows, the machine description and the Markdown table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from mobclf.artifacts import load_artifact
from mobclf.bench import table
from mobclf.bench.table import result_row
from mobclf.errors import UserError
from mobclf.models.tfidf import fit_tfidf_baseline
from mobclf.train.metrics import agreement, classification_metrics

HERE = Path(__file__).resolve().parent
DATA_ROOT = HERE.parent.parent / "shared" / "data"
WORK_ROOT = Path.home() / ".cache" / "mobclf" / "benchmarks"


def reuse_or_run(path: Path, kind: str, step):
    """Load ``path`` if it is a verified artifact of ``kind`` (wall time None: not measured in this run);
    otherwise run ``step``, which writes it, and time it."""
    try:
        return load_artifact(path, kind=kind), None
    except UserError:
        start = time.perf_counter()
        artifact = step()
        return artifact, time.perf_counter() - start


def row(name, kind, arch, metrics, agreement_score, artifact=None, params=None, size_bytes=None, seconds=None):
    """A result row (``mobclf.bench.table.result_row``) of an eager model or the TF-IDF baseline, with its wall
    time; latency is measured by ``mobclf bench``, not here."""
    return result_row(name, kind, arch, "eager" if arch != "tfidf-lr" else "sklearn", "fp32", metrics,
                      agreement_with_teacher=agreement_score,
                      size_bytes=size_bytes if artifact is None else artifact.file("model.safetensors").stat().st_size,
                      params=params if artifact is None else artifact.manifest["params"],
                      wall_time_s=None if seconds is None else round(seconds, 1))


def artifact_row(name: str, artifact, seconds: float | None = None, agreement_score: float | None = None) -> dict:
    """A teacher or student artifact's test row; agreement is ``agreement_score`` if given, else with the teacher
    a student was distilled from (1 for a teacher: the report's baseline)."""
    metrics = artifact.manifest["metrics"]
    if agreement_score is None:
        agreement_score = metrics.get("agreement_with_teacher", {}).get("test", 1.0)
    stages = artifact.kind == "student" and artifact.manifest["distillation"]["stages"]  # every stage, not the main one
    recorded = sum(stage["seconds"] for stage in stages) if stages else artifact.manifest["training"]["seconds"]
    return row(name, artifact.kind, artifact.manifest["architecture"]["name"], metrics["test"], agreement_score,
               artifact, seconds=seconds or recorded)


def tfidf_rows(dataset, teacher_test_predictions: np.ndarray, c_grid=(1.0, 10.0, 100.0)) -> list[dict]:
    """TF-IDF + logistic regression at scikit-learn's default C, and with C chosen on val from ``c_grid``."""
    rows = []
    for name, c_values in (("tfidf-lr", [1.0]), ("tfidf-lr-c-tuned-on-val", list(c_grid))):
        start = time.perf_counter()
        fits = [fit_tfidf_baseline(dataset.texts("train"), dataset.targets("train"), language=dataset.language,
                                   multi_label=dataset.multi_label, C=c) for c in c_values]
        val_f1 = [classification_metrics(dataset.targets("val"), fitted.predict(dataset.texts("val")),
                                         dataset.labels)["micro_f1"] for fitted in fits]
        baseline = fits[val_f1.index(max(val_f1))]
        predictions = baseline.predict(dataset.texts("test"))
        rows.append(row(name, "baseline", "tfidf-lr",
                        classification_metrics(dataset.targets("test"), predictions, dataset.labels),
                        agreement(predictions, teacher_test_predictions), params=baseline.params,
                        size_bytes=baseline.size_bytes, seconds=time.perf_counter() - start))
    return rows


COLUMNS = [table.NAME, table.RUNTIME, table.WEIGHTS, table.ACCURACY, table.MICRO_F1, table.MACRO_F1,
           table.SHARE_OF_TEACHER, table.AGREEMENT, table.PARAMS, table.SIZE_MB, table.WALL_TIME]


def markdown_table(title: str, report: dict) -> str:
    """The rows as a Markdown table (``mobclf.bench.table``, as `mobclf bench` renders its own), with each model's
    micro-F1 as a share of the report's baseline row."""
    baseline = next(r for r in report["rows"] if r["name"] == report["baseline"])
    return table.markdown(title, COLUMNS, report["rows"], baseline)


def write_report(results: Path, name: str, title: str, report: dict) -> str:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(title, report)
    (results / f"{name}.md").write_text(table, encoding="utf-8")
    return table
