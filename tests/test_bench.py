"""mobclf bench on tiny models: every variant measured in its runtime, a well-formed report with plots."""

from __future__ import annotations

import json

from conftest import run
from dataset_rows import split_rows

from mobclf.artifacts import load_artifact

DESIGN_ROW_KEYS = {"name", "kind", "arch", "runtime", "precision", "micro_f1", "macro_f1", "accuracy",
                   "agreement_with_teacher", "size_bytes", "params", "latency_ms_p50", "latency_ms_p95",
                   "throughput_per_s"}


def test_bench_reports_teacher_students_exported_files_and_tfidf(students):
    bundle = students / "bench-bundle"
    assert run("export", "--from", students / "tinybert", "--target", "all", "--out", bundle,
               "--parity-texts", "20").exit_code == 0
    out = students / "bench-report"
    result = run("bench", "--model", students / "teacher", "--model", students / "textcnn", "--model", bundle,
                 "--data", students / "data", "--out", out, "--latency-texts", "5")
    assert result.exit_code == 0, result.output
    assert load_artifact(out, kind="report").manifest["lineage"]["parents"][0]["kind"] == "teacher"
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["baseline"] == "teacher" and report["split"] == "test" and report["machine"]["cpu"]
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["teacher", "textcnn", "bench-bundle/model.pte", "bench-bundle/model.onnx", "tfidf-lr"]
    assert [rows[name]["runtime"] for name in rows] == ["eager", "eager", "executorch", "onnxruntime", "sklearn"]
    for row in rows.values():
        assert DESIGN_ROW_KEYS <= set(row)
        assert 0 <= row["micro_f1"] <= 1 and row["size_bytes"] > 0 and row["params"] > 0
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"] and row["throughput_per_s"] > 0
        assert 0 <= row["agreement_with_teacher"] <= 1
    assert rows["teacher"]["agreement_with_teacher"] == 1.0
    # the exported fp32 files classify exactly like the student they came from
    student = load_artifact(students / "tinybert").manifest["metrics"]["test"]["micro_f1"]
    assert abs(rows["bench-bundle/model.pte"]["micro_f1"] - student) < 1e-6
    assert abs(rows["bench-bundle/model.onnx"]["micro_f1"] - student) < 1e-6
    timings = rows["textcnn"]["timings"]
    assert [t["threads"] for t in timings] == sorted({1, timings[-1]["threads"]})
    assert set(timings[0]["latency_ms"]) == {"model", "with_tokenization"} and timings[0]["peak_rss_mb"] > 0
    for name in ("f1_vs_latency.png", "f1_vs_size.png", "per_label_f1.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}"' in (out / "report.html").read_text("utf-8")
    assert "| teacher | eager | fp32 |" in (out / "report.md").read_text("utf-8")


def test_bench_refuses_a_dataset_as_a_model(students, tmp_path):
    result = run("bench", "--model", students / "data", "--data", students / "data", "--out", tmp_path / "r")
    assert result.exit_code != 0 and "dataset artifact" in result.output
    assert not (tmp_path / "r").exists()


def test_bench_on_a_labelled_file_refuses_unknown_labels_or_drops_them(students, tmp_path):
    from mobclf.stages import EvalConfig, LabelledFileOptions
    from mobclf.train.evaluate import run as evaluate

    rows = [{"text": text, "labels": [*labels, *(["weather"] if number == 1 else [])]}
            for number, (text, labels) in enumerate(split_rows(students / "data", "test")[:30])]
    news = tmp_path / "next-month.jsonl"
    news.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "report"
    bench = ["bench", "--model", students / "textcnn", "--file", news, "--out", out, "--latency-texts", "2"]
    result = run(*bench)
    assert result.exit_code == 2 and f"{news}:2:" in result.output and "'weather'" in result.output
    assert not out.exists()

    result = run(*bench, "--ignore-unknown-labels")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["dataset"] == "next-month.jsonl" and report["split"] == "file"
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["textcnn", "tfidf-lr"]  # the baseline trains on the dataset the student came from
    manifest = load_artifact(out, kind="report").manifest
    assert manifest["examples"]["dropped_unknown_labels"] == {"labels": {"weather": 1}, "rows": 0}
    assert [parent["kind"] for parent in manifest["lineage"]["parents"]] == ["student", "dataset"]
    scored = evaluate(EvalConfig(reading=LabelledFileOptions(ignore_unknown_labels=True)), students / "textcnn",
                      file=news)
    assert rows["textcnn"]["micro_f1"] == scored["micro_f1"] and rows["textcnn"]["agreement_with_teacher"] is None
    assert "(whole file)" in (out / "report.md").read_text("utf-8")


def test_one_row_type_and_one_table_for_markdown_and_html():
    """bench and the benchmark scripts render rows through mobclf.bench.table: Markdown and HTML show the same cells
    (HTML is not re-parsed from the Markdown), and a field a row cannot have is a dash, never a made-up number."""
    import html

    from mobclf.bench import table

    metrics = {"micro_f1": 0.9, "macro_f1": 0.8, "subset_accuracy": 0.7}
    rows = [table.result_row("teacher", "teacher", "bert", "eager", "fp32", metrics, size_bytes=2_000_000,
                             params=1234, latency_ms_p50=1.5, latency_ms_p95=2.5, throughput_per_s=99.0),
            table.result_row("int8|pte", "quantized", "textcnn", "executorch", "int8",
                             {**metrics, "micro_f1": 0.45}, size_bytes=500_000, params=99, parity_passed=False)]
    assert set(table.FIELDS) <= set(rows[1]) and rows[1]["latency_ms_p50"] is None
    columns = [table.NAME, table.MICRO_F1, table.SHARE_OF_TEACHER, table.PARAMS, table.LATENCY, table.PEAK_RSS]
    cells = table.cells(columns, rows, rows[0])
    assert cells[1] == ["int8|pte ⚠ parity FAILED", "0.4500", "50.0%", "99", "—", "—"]
    markdown, page = table.markdown("t", columns, rows, rows[0]), table.html("t", columns, rows, rows[0])
    for row in cells:
        assert "| " + " | ".join(row) + " |" in markdown
        assert "".join(f"<td>{html.escape(cell)}</td>" for cell in row) in page
