"""What the benchmark scripts share: reuse-or-run of artifacts, result rows in DESIGN.md's format, the TF-IDF
baseline rows, the machine description and the Markdown table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from mobclf.artifacts import load_artifact
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
    return {"name": name, "kind": kind, "arch": arch, "runtime": "eager" if arch != "tfidf-lr" else "sklearn",
            "precision": "fp32", "micro_f1": metrics["micro_f1"], "macro_f1": metrics["macro_f1"],
            "accuracy": metrics["subset_accuracy"], "agreement_with_teacher": agreement_score,
            "size_bytes": size_bytes if artifact is None else artifact.file("model.safetensors").stat().st_size,
            "params": params if artifact is None else artifact.manifest["params"],
            "latency_ms_p50": None, "latency_ms_p95": None, "throughput_per_s": None,
            "wall_time_s": None if seconds is None else round(seconds, 1)}


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


def markdown_table(title: str, report: dict) -> str:
    """The rows as a Markdown table, with each model's micro-F1 as a share of the report's baseline row."""
    baseline_f1 = next(r["micro_f1"] for r in report["rows"] if r["name"] == report["baseline"])
    lines = [f"# {title}", "",
             "| model | runtime | precision | accuracy | micro-F1 | macro-F1 | % of teacher micro-F1 | "
             "agreement with teacher | params | size (MB) | wall time (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        agreement_text = "—" if r["agreement_with_teacher"] is None else f"{r['agreement_with_teacher']:.4f}"
        lines.append(f"| {r['name']} | {r['runtime']} | {r['precision']} | {r['accuracy']:.4f} | "
                     f"{r['micro_f1']:.4f} | {r['macro_f1']:.4f} | {100 * r['micro_f1'] / baseline_f1:.1f}% | "
                     f"{agreement_text} | {r['params']:,} | {r['size_bytes'] / 1e6:.2f} | {r['wall_time_s']} |")
    return "\n".join(lines) + "\n"


def write_report(results: Path, name: str, title: str, report: dict) -> str:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(title, report)
    (results / f"{name}.md").write_text(table, encoding="utf-8")
    return table
