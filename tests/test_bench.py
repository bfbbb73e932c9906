"""mobclf bench on tiny models: every variant measured in its runtime, a well-formed report with plots."""

from __future__ import annotations

import json

from conftest import run
from dataset_rows import split_rows

import mobclf
from mobclf.artifacts import load_artifact
from mobclf.bench import table

DESIGN_ROW_KEYS = {"name", "kind", "arch", "runtime", "precision", "micro_f1", "macro_f1", "accuracy",
                   "agreement_with_teacher", "size_bytes", "params", "latency_ms_p50", "latency_ms_p95",
                   "throughput_per_s"}
BASELINES = ["tfidf-lr", "tfidf-svm", "tfidf-nb"]


def test_bench_reports_teacher_students_exported_files_and_tfidf(students):
    bundle = students / "bench-bundle"
    assert run("export", "--from", students / "tinybert", "--target", "all", "--out", bundle,
               "--parity-texts", "20").exit_code == 0
    out = students / "bench-report"
    result = run("bench", "--model", students / "teacher", "--model", students / "textcnn", "--model", bundle,
                 "--data", students / "data", "--out", out, "--latency-texts", "5", "--cold-starts", "3")
    assert result.exit_code == 0, result.output
    assert load_artifact(out, kind="report").manifest["lineage"]["parents"][0]["kind"] == "teacher"
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["baseline"] == "teacher" and report["split"] == "test" and report["machine"]["cpu"]
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["teacher", "textcnn", "bench-bundle/model.pte", "bench-bundle/model.onnx", *BASELINES]
    assert [rows[name]["runtime"] for name in rows] == ["eager", "eager", "executorch", "onnxruntime", *["sklearn"] * 3]
    # the baselines: each with its setting chosen on val, the best of them on val named under the table
    assert [rows[name]["best_baseline_on_val"] for name in BASELINES].count(True) == 1
    best = max(BASELINES, key=lambda name: rows[name]["val_micro_f1"])
    assert rows[best]["best_baseline_on_val"] and rows["tfidf-svm"]["setting"]["C"] in rows["tfidf-svm"]["tried"]
    for row in rows.values():
        assert DESIGN_ROW_KEYS <= set(row)
        assert 0 <= row["micro_f1"] <= 1 and row["size_bytes"] > 0 and row["params"] > 0
        assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"] and row["throughput_per_s"] > 0
        assert 0 <= row["agreement_with_teacher"] <= 1
    assert rows["teacher"]["agreement_with_teacher"] == 1.0
    for name in ("teacher", "textcnn", "bench-bundle/model.pte", "bench-bundle/model.onnx"):  # the mean too
        assert rows[name]["latency_ms_mean"] > 0
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
    text = (out / "report.md").read_text("utf-8")
    assert "| teacher | eager | fp32 |" in text
    # what a reader needs around the table: which data (named after its source file), when, on what, with which
    # code; what the columns mean; the plots
    assert text.startswith(f"# mobclf bench: news.jsonl (test split, {report['texts']} texts)\n")
    assert f"with mobclf {mobclf.__version__}" in text and report["provenance"]["date"] in text
    assert "Agreement with teacher: the share of texts whose chosen label set equals the teacher's" in text
    assert "![micro-F1 against model size](f1_vs_size.png)" in text and "parity FAILED" not in text
    assert all(0 <= row["others_cpu_share"] < 1 for row in report["rows"][:-3])
    assert f"The best baseline on val: {best}." in text
    # the .pte once more in the native runner: its own row, logits equal to the Python runtime's
    [native] = report["native"]
    assert native["name"] == "bench-bundle/model.pte" and native["logits_equal_python"] is True
    assert native["texts"] == 5 and native["cold_start_ms"]["repeats"] == 3 and 0 < native["peak_rss_mb"] < 100
    assert 0 < native["cold_start_ms"]["min"] <= native["cold_start_ms"]["median"] <= native["cold_start_ms"]["max"]
    assert native["tokenize_jvm_ms"]["p50"] > 0 and 0 < native["tokenize_share"] < 1
    assert native["end_to_end_ms"]["p50"] >= native["latency_ms"]["p50"] and 0 < native["latency_ms"]["p50"] <= \
        native["latency_ms"]["p95"]
    profile = native["profile"]  # where the time goes: XNNPACK's operators and the portable ones (ETDump)
    assert 0 < profile["xnnpack_ms"] + profile["portable_ms"] <= profile["execute_ms"]
    assert {"XNNPACK", "portable"} == {operator["runs_on"] for operator in profile["operators"]}
    assert any(operator["operator"].startswith("Fully Connected") for operator in profile["operators"])
    native_table = (out / "report.md").read_text("utf-8").split("## Native: the ExecuTorch C++ runtime")[1]
    # the teacher's Python p50 over the native end to end (tokenizer + model) p50
    assert "× faster than teacher (p50)" in native_table
    assert f" {table.times_faster(native['end_to_end_ms']['p50'], rows['teacher'])} |" in native_table
    assert "### Where the time goes: bench-bundle/model.pte" in (out / "report.md").read_text("utf-8")
    assert "<h2>Native: the ExecuTorch C++ runtime" in (out / "report.html").read_text("utf-8")


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
    assert list(rows) == ["textcnn", *BASELINES]  # the baselines train on the dataset the student came from
    manifest = load_artifact(out, kind="report").manifest
    assert manifest["examples"]["dropped_unknown_labels"] == {"labels": {"weather": 1}, "rows": 0}
    assert [parent["kind"] for parent in manifest["lineage"]["parents"]] == ["student", "dataset"]
    scored = evaluate(EvalConfig(reading=LabelledFileOptions(ignore_unknown_labels=True)), students / "textcnn",
                      file=news)
    assert rows["textcnn"]["micro_f1"] == scored["micro_f1"] and rows["textcnn"]["agreement_with_teacher"] is None
    assert "(whole file, 30 texts)" in (out / "report.md").read_text("utf-8")


def test_one_row_type_and_one_table_for_markdown_and_html():
    """bench and the benchmark scripts render rows through mobclf.bench.table: Markdown and HTML show the same cells
    (HTML is not re-parsed from the Markdown), and a field a row cannot have is a dash, never a made-up number."""
    import html

    metrics = {"micro_f1": 0.9, "macro_f1": 0.8, "subset_accuracy": 0.7}
    rows = [table.result_row("teacher", "teacher", "bert", "eager", "fp32", metrics, size_bytes=2_000_000,
                             params=1234, latency_ms_p50=1.5, latency_ms_p95=2.5, throughput_per_s=99.0),
            table.result_row("int8|pte", "quantized", "textcnn", "executorch", "int8",
                             {**metrics, "micro_f1": 0.45}, size_bytes=500_000, params=99, parity_passed=False)]
    assert set(table.FIELDS) <= set(rows[1]) and rows[1]["latency_ms_p50"] is None
    columns = [table.NAME, table.MICRO_F1, table.SHARE_OF_TEACHER, table.PARAMS, table.LATENCY,
               table.FASTER_THAN_TEACHER, table.PEAK_RSS]
    cells = table.cells(columns, rows, rows[0])
    assert cells[0][-2] == "1.0×" and cells[1] == ["int8|pte ⚠ parity FAILED", "0.4500", "50.0%", "99", "—", "—", "—"]
    assert table.times_faster(0.5, rows[0]) == "3.0×" and table.times_faster(0.03, rows[0]) == "50×"
    markdown, page = table.markdown("t", columns, rows, rows[0]), table.html("t", columns, rows, rows[0])
    for row in cells:
        assert "| " + " | ".join(row) + " |" in markdown
        assert "".join(f"<td>{html.escape(cell)}</td>" for cell in row) in page


def test_a_report_measured_beside_busy_processes_says_so():
    from mobclf.bench.measure import OtherProcesses
    from mobclf.bench.report import markdown

    with OtherProcesses() as others:  # nothing else runs here: about none of the CPUs taken by others
        sum(range(2_000_000))
    assert 0 <= others.cpu_share < 0.5
    row = {"name": "m", "runtime": "eager", "precision": "fp32", "micro_f1": 0.5, "macro_f1": 0.5,
           "agreement_with_teacher": None, "size_bytes": 1, "params": 1, "latency_ms_p50": 1.0,
           "latency_ms_p95": 1.0, "throughput_per_s": 1.0, "timings": [], "others_cpu_share": 0.4}
    report = {"dataset": "d", "split": "test", "baseline": None, "rows": [row], "load_average_at_start": 3.1}
    assert "⚠ Other processes used up to 40% of the CPUs" in markdown(report)
    assert "load average 3.1 at the start" in markdown(report)
    assert "⚠" not in markdown({**report, "rows": [{**row, "others_cpu_share": 0.02}]})


def test_without_a_compiler_bench_leaves_the_native_rows_out_with_a_note(monkeypatch, capsys):
    from mobclf.bench import report
    from mobclf.errors import UserError
    from mobclf.native import runner

    def no_compiler(name="host"):
        raise UserError("g++ is not installed; run android-demo/tools/install-native-tools.sh")

    monkeypatch.setattr(runner, "build_runner", no_compiler)
    assert report._native_rows(["a .pte variant"], ["text"], cold_starts=1) == []
    said = " ".join(capsys.readouterr().err.split())  # a log line, wrapped by rich
    assert "no native rows: g++ is not installed; run" in said and "install-native-tools.sh" in said
