"""Compression benchmark (issue 4): each distilled student fp32 → pruned → INT8, on THUCNews or Reuters.

For the TextCNN (KD) and TinyBERT-4 (prediction KD) students of `tinybert_distill.py` (run it first; its work
directory is reused):

1. fp32: the student as distilled, and its fp32 `.pte` (the file the INT8 one is compared with);
2. INT8 `.pte` of the unpruned student (PT2E static, int8 embedding rows): what quantization alone costs;
3. pruned: `mobclf prune` (vocabulary pruning + 30% of conv filters / heads and FFN channels by magnitude, one step,
   recovery distillation from the teacher);
4. pruned INT8: `.pte` (ExecuTorch, XNNPACK, static) and `.onnx` (onnxruntime dynamic).

Quantized rows are measured in their runtime (ExecuTorch's or onnxruntime's Python runtime), on the test split.

    python benchmarks/compress.py --dataset thucnews
    python benchmarks/compress.py --dataset reuters

Results: benchmarks/results/<dataset>-compress.{json,md}. Target: the pruned INT8 student keeps ≥ 99% of its fp32
student's test micro-F1 with a model file ≤ 1/4 of the fp32 one.
"""

from __future__ import annotations

from pathlib import Path

import click
from common import WORK_ROOT, artifact_row, reuse_or_run, write_report
from mobclf.artifacts import load_artifact
from mobclf.bench.report import machine
from mobclf.export.executorch import to_pte
from mobclf.export.exportable import ExportableClassifier
from mobclf.models import load_classifier
from mobclf.stages import PRUNE, QUANTIZE, FitConfig, ParityCheck, PruneConfig, QuantizeConfig

STUDENTS = {  # student directory in the tinybert_distill work directory → recovery training
    "textcnn-kd": FitConfig(epochs=5, batch_size=64, lr=5e-4, patience=2),
    "tinybert4-pred": FitConfig(epochs=2, batch_size=32, lr=1e-4, patience=1),
}


def quantized_row(name: str, artifact, fp32_micro_f1: float) -> dict:
    """A quantized artifact's test row: metrics measured in its runtime, size of its model file."""
    manifest, quantization = artifact.manifest, artifact.manifest["quantization"]
    metrics = manifest["metrics"]
    return {"name": name, "kind": "quantized", "arch": manifest["architecture"]["name"],
            "runtime": quantization["runtime"] if quantization["runtime"] != "onnx" else "onnxruntime",
            "precision": "int8", "micro_f1": metrics["test"]["micro_f1"], "macro_f1": metrics["test"]["macro_f1"],
            "accuracy": metrics["test"]["subset_accuracy"],
            "agreement_with_teacher": metrics["agreement_with_teacher"].get("test"),
            "agreement_with_fp32": metrics["agreement_with_fp32"]["test"],
            "share_of_fp32_student": metrics["test"]["micro_f1"] / fp32_micro_f1,
            "size_bytes": quantization["size_bytes"], "params": manifest["params"],
            "latency_ms_p50": None, "latency_ms_p95": None, "throughput_per_s": None, "wall_time_s": None}


@click.command()
@click.option("--dataset", "name", type=click.Choice(["thucnews", "reuters"]), required=True)
@click.option("--work", type=click.Path(path_type=Path), help="[default: ~/.cache/mobclf/benchmarks/<dataset>]")
@click.option("--results", default=Path(__file__).parent / "results", type=click.Path(path_type=Path),
              show_default=True)
@click.option("--student", "only", multiple=True, type=click.Choice(sorted(STUDENTS)),
              help="Compress only these students (the report is written when all are there) [default: all].")
def main(name: str, work: Path | None, results: Path, only: tuple[str, ...]) -> None:
    work = work or WORK_ROOT / name
    data = work / "dataset"
    students = {key: load_artifact(work / key, kind="student") for key in (only or STUDENTS)}
    teacher = load_artifact(next(iter(students.values())).manifest["distillation"]["teacher"]["path"])
    rows = [artifact_row("teacher", teacher, agreement_score=1.0)]
    for student_name, student in students.items():
        recovery = STUDENTS[student_name]
        fp32_row = artifact_row(student_name, student)
        fp32_row["pte_size_bytes"] = len(to_pte(ExportableClassifier(load_classifier(student)),
                                               student.manifest["tokenizer"]["max_length"]).pte)
        rows.append(fp32_row)
        fp32_f1 = fp32_row["micro_f1"]
        int8 = reuse_or_run(work / f"{student_name}-int8", "quantized", lambda: QUANTIZE.call(
            QuantizeConfig(parity=ParityCheck(accept_failure=True)), {"source": student.path, "data": data},
            work / f"{student_name}-int8"))[0]
        rows.append(quantized_row(f"{student_name}-int8-pte", int8, fp32_f1))
        pruned_dir = work / f"{student_name}-pruned"
        pruning = PruneConfig(ratio=0.3, importance="magnitude", fit=recovery)
        pruned, seconds = reuse_or_run(pruned_dir, "pruned", lambda: PRUNE.call(
            pruning, {"source": student.path, "data": data}, pruned_dir))
        rows.append({**artifact_row(f"{student_name}-pruned", pruned, seconds),
                     "share_of_fp32_student": pruned.manifest["metrics"]["test"]["micro_f1"] / fp32_f1})
        for runtime, scheme, suffix in (("executorch", "static", "pte"), ("onnx", "dynamic", "onnx")):
            out = work / f"{student_name}-pruned-int8-{suffix}"
            quantized = reuse_or_run(out, "quantized", lambda: QUANTIZE.call(
                QuantizeConfig(runtime=runtime, scheme=scheme, parity=ParityCheck(accept_failure=True)),
                {"source": pruned.path, "data": data}, out))[0]
            row = quantized_row(f"{student_name}-pruned-int8-{suffix}", quantized, fp32_f1)
            row["size_vs_fp32_pte"] = row["size_bytes"] / fp32_row["pte_size_bytes"]
            rows.append(row)
    if len(students) < len(STUDENTS):
        return
    report = {"dataset": name, "split": "test", "baseline": "teacher", "machine": machine(), "rows": rows}
    table = write_report(results, f"{name}-compress", f"{name}: students fp32 → pruned → INT8 (test split)", report)
    targets = ["", "Targets (pruned INT8 vs the fp32 student: ≥ 99% of its test micro-F1, file ≤ 1/4 of its fp32 "
               "`.pte`):", "", "| model | % of fp32 student micro-F1 | agreement with fp32 | file / fp32 .pte | met |",
               "|---|---:|---:|---:|---|"]
    for row in rows:
        if "size_vs_fp32_pte" in row:
            met = row["share_of_fp32_student"] >= 0.99 and row["size_vs_fp32_pte"] <= 0.25
            targets.append(f"| {row['name']} | {100 * row['share_of_fp32_student']:.1f}% | "
                           f"{row['agreement_with_fp32']:.4f} | {row['size_vs_fp32_pte']:.3f} | "
                           f"{'yes' if met else 'no'} |")
    with open(results / f"{name}-compress.md", "a", encoding="utf-8") as markdown:
        markdown.write("\n".join(targets) + "\n")
    click.echo(table + "\n".join(targets))


if __name__ == "__main__":
    main()
