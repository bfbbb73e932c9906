"""``mobclf bench``: size, latency, throughput, memory and accuracy parity of every variant against the teacher.

Every variant of every ``--model`` artifact (see ``variants``) plus the TF-IDF + logistic-regression baseline is
scored on the whole split of a dataset artifact (or on a whole labelled file, read as ``mobclf eval`` reads it, the
baseline then trained on the dataset the first model came from), and timed on real texts of it, in fresh processes
at 1 thread and at all threads (``measure``). The teacher fp32 eager row is the baseline: every row records its
agreement with it. Every ``.pte`` is measured once more in the native C++ runner (``measure_native``: cold start,
steady latency and memory without Python, the app's Java tokenizer beside it), and every measurement records how
much of the CPUs other processes took meanwhile (``OtherProcesses``), so a report made beside a busy neighbour says
so. Output (a ``report`` artifact): ``report.json`` in DESIGN.md's result format (rows with extra fields: latency per
thread count and with/without tokenization, memory; the native rows; date, commit and machine), ``report.md``,
``report.html`` and its PNG plots (micro-F1 against latency and against size with the Pareto front; per-label F1 of
the teacher and the best student, labels named).
"""

from __future__ import annotations

import html
import json
import os
import platform
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from mobclf.artifacts import Artifact, check_output_dir, lineage, load_artifact, sha256_file, write_artifact
from mobclf.bench import table
from mobclf.bench.measure import OtherProcesses, measure_in_subprocess, measure_native, percentiles_ms
from mobclf.bench.variants import KINDS, Variant, open_model, variants_of
from mobclf.cascade import cascade_rules, confidence, escalated
from mobclf.console import console
from mobclf.data.dataset import Dataset, load_dataset
from mobclf.distill.early_exit import exit_shares
from mobclf.distill.teacher_cache import teacher_outputs
from mobclf.errors import UserError
from mobclf.models import load_classifier
from mobclf.models.tfidf import tune_tfidf_baselines
from mobclf.text import load_tokenizer
from mobclf.train.classifier import predict_probs
from mobclf.stages import BenchConfig
from mobclf.train.evaluate import Labelled, labelled_file, labelled_split
from mobclf.train.metrics import agreement, classification_metrics
from mobclf.train.thresholds import predict_labels

THROUGHPUT_TEXTS = 512


def run(config: BenchConfig, *, model: list[Path], out: Path, data: Path | None = None, file: Path | None = None,
        force: bool = False) -> Artifact:
    """Benchmark every variant of the ``model`` artifacts on ``config.split`` of the dataset artifact ``data`` or on
    the labelled ``file`` (exactly one); write a ``report`` artifact at ``out``."""
    models = list(model)
    if (data is None) == (file is None):
        raise UserError("give the labelled examples either as --data DIR (a dataset artifact) or as --file FILE "
                        "(a labelled file), not both or neither")
    if data is not None and config.reading.given():
        raise UserError(f"{', '.join(config.reading.given())} read a labelled --file; with --data drop them")
    check_output_dir(out, force)
    load_at_start = round(os.getloadavg()[0], 2)
    artifacts = {str(artifact.path): artifact for artifact in (load_artifact(path, kind=KINDS) for path in models)}
    variants = [variant for artifact in artifacts.values() for variant in variants_of(artifact)]
    if data is not None:
        training = load_dataset(data)
        examples = labelled_split(training, config.split, *artifacts.values())
    else:
        first, *others = artifacts.values()
        for other in others:
            if other.labels != first.labels:
                raise UserError(f"has other labels than {first.path} (or another order); bench models trained on "
                                "the same labels", path=other.path)
        examples = labelled_file(file, first.labels, config.reading)
        training = _training_data(first, examples.labels) if config.tfidf else None
    texts = examples.texts
    teachers = [variant for variant in variants if variant.kind == "teacher"]
    all_threads = sorted({1, os.cpu_count() or 1})
    timing_texts = texts[:config.latency_texts]
    throughput_texts = (texts * THROUGHPUT_TEXTS)[:THROUGHPUT_TEXTS]

    rows, predictions, probabilities, per_text_ms = [], {}, {}, {}
    for variant in variants:
        console.log(f"{variant.name}: {variant.runtime} {variant.precision} on {variant.device}")
        if variant.parity_passed is False:
            console.log(f"[yellow]{variant.name}: its export failed the parity check (exported with "
                        "--accept-parity-failure); its row is marked")
        exit_layers = None
        if variant.arch == "early_exit_bert":  # its answers, and the layer each text left at
            artifact = artifacts[variant.artifact]
            early_exit = open_model(artifact, variant.file if artifact.kind == "export" else None)
            answers = early_exit.answer(texts, description=f"{variant.name}: predicting")
            eager_probs, exit_layers, depth = answers.probs, answers.exit_layers, early_exit.model.depth
        elif variant.runtime == "eager":
            eager_probs = _eager_probs(variant, artifacts[variant.artifact], texts)
        else:
            eager_probs = None
        with OtherProcesses() as others:
            timings = [measure_in_subprocess(variant, threads, timing_texts, throughput_texts,
                                             None if eager_probs is not None or threads != all_threads[-1] else texts)
                       for threads in all_threads]
        probs = eager_probs if eager_probs is not None else timings[-1].pop("probs")
        per_text_ms[variant.name] = [timing.pop("per_text_ms") for timing in timings][-1]  # all threads; not kept
        probabilities[variant.name] = probs
        predictions[variant.name] = predict_labels(probs, np.asarray(variant.thresholds), variant.single_label)
        rows.append(_row(variant, examples, predictions[variant.name], timings))
        rows[-1]["others_cpu_share"] = others.cpu_share
        # the mean beside p50 and p95: what a cascade or an early-exit model saves, against the models it comes from
        rows[-1]["latency_ms_mean"] = round(float(np.mean(per_text_ms[variant.name])), 4)
        if exit_layers is not None:  # where texts left an early-exit model
            rows[-1].update(mean_exit_layer=float(exit_layers.mean()), exit_shares=exit_shares(exit_layers - 1, depth))
    cascades = [artifact for artifact in artifacts.values() if artifact.kind == "cascade"]
    rows += [_cascade_row(cascade, runtime, variants, examples, probabilities, predictions, per_text_ms)
             for cascade in cascades for runtime in cascade_rules(cascade)]
    if config.tfidf and training is not None:
        rows += _tfidf_rows(training, examples, timing_texts, throughput_texts, predictions)
    programs = [variant for variant in variants if variant.runtime == "executorch"]
    native = _native_rows(programs, timing_texts, config.cold_starts) if config.native and programs else []
    native += [_native_cascade_row(cascade, variants, native) for cascade in cascades
               if "executorch" in cascade_rules(cascade) and native]
    for row in native:
        row.pop("per_text", None)
    baseline = teachers[0].name if teachers else None
    for row in rows:
        row["agreement_with_teacher"] = (agreement(predictions[row["name"]], predictions[baseline])
                                         if baseline else None)
    report = {"dataset": config.name or (_dataset_name(training) if data is not None else Path(file).name),
              "split": config.split if data is not None else "file", "texts": len(texts),
              "timed_texts": len(timing_texts), "baseline": baseline, "machine": machine(),
              "provenance": provenance(), "load_average_at_start": load_at_start, "rows": rows, "native": native,
              "labels": examples.labels, "per_label_f1": {row["name"]: row.pop("per_label_f1") for row in rows}}
    parents = [*artifacts.values()] + ([training.artifact] if training is not None else [])
    with write_artifact(out, kind="report", force=force) as artifact:
        write_report_files(report, artifact.dir)
        artifact.manifest.update({"report": "report.json", "labels": examples.labels, "lineage": lineage(parents)})
        if file is not None:
            artifact.manifest["examples"] = {"file": str(Path(file).resolve()), "sha256": sha256_file(file),
                                             "texts": len(texts), "dropped_unknown_labels": examples.dropped or None}
    return load_artifact(out)


def _dataset_name(dataset: Dataset) -> str:
    """What a report calls a dataset artifact: its one source file's name, or the folder its sources share (e.g.
    ``thucnews`` for ``thucnews/train.txt`` and ``thucnews/test.txt``), else the artifact's folder name."""
    sources = [Path(source["path"]) for source in dataset.artifact.manifest.get("sources", [])
               if source.get("format") != "class-list"]
    if len(sources) == 1:
        return sources[0].name
    folders = {source.parent for source in sources}
    return folders.pop().name if len(folders) == 1 else dataset.artifact.path.name


def summary(artifact: Artifact) -> str:
    """What ``mobclf bench`` prints: the report in Markdown."""
    return artifact.file("report.md").read_text(encoding="utf-8")


def _training_data(model: Artifact, labels: list[str]) -> Dataset | None:
    """The dataset ``model`` came from (its lineage), for the TF-IDF baseline's training split; None (logged) when
    there is none to be had."""
    try:
        parent = model.ancestor("dataset")
    except UserError as err:
        parent, reason = None, str(err.message)
    else:
        reason = "its lineage names no dataset"
    if parent is not None and parent.labels == labels:
        return Dataset(parent)
    console.log(f"[yellow]no TF-IDF baseline: it trains on the dataset {model.path} came from, and "
                f"{reason if parent is None else 'that dataset has other labels'}")
    return None


def _eager_probs(variant: Variant, artifact: Artifact, texts: list[str]) -> np.ndarray:
    """Probabilities of an eager model on ``texts``; a teacher's go through the logits cache (usually filled by
    distillation: a BERT-base pass over a test split takes minutes on a CPU)."""
    model, tokenizer = load_classifier(artifact), load_tokenizer(artifact.file("tokenizer"))
    if variant.kind != "teacher":
        return predict_probs(model, tokenizer, texts, description=f"{variant.name}: predicting")
    logits = teacher_outputs(artifact, model, tokenizer, texts, device=variant.device).all("logits")
    return torch.sigmoid_(logits).numpy()


def _native_rows(programs: list[Variant], texts: list[str], cold_starts: int) -> list[dict]:
    """Every ``.pte`` in the native runner (``measure_native``); none, with a note, where the runner does not build."""
    from mobclf.native.jvm import build_device_cli
    from mobclf.native.runner import build_runner

    try:
        build_runner()
    except UserError as err:
        console.log(f"[yellow]no native rows: {err.message}")
        return []
    jvm = True
    try:
        build_device_cli()
    except UserError as err:
        console.log(f"[yellow]native rows without the Java tokenizer's time: {err.message}")
        jvm = False
    rows = []
    for variant in programs:
        console.log(f"{variant.name}: native ExecuTorch runner, 1 thread")
        with OtherProcesses() as others:
            rows.append(measure_native(variant, texts, cold_starts, jvm))
        rows[-1]["others_cpu_share"] = others.cpu_share
        if not rows[-1]["logits_equal_python"]:
            console.log(f"[yellow]{variant.name}: the native runner's logits differ from the Python runtime's by up "
                        f"to {rows[-1]['max_abs_logit_difference']:.3g}")
    return rows


def _row(variant: Variant, examples: Labelled, predicted: np.ndarray, timings: list[dict]) -> dict:
    metrics = classification_metrics(examples.targets, predicted, examples.labels)
    main_timing = timings[-1]
    return table.result_row(
        variant.name, variant.kind, variant.arch, variant.runtime, variant.precision, metrics, device=variant.device,
        parity_passed=variant.parity_passed, size_bytes=variant.size_bytes, params=variant.params,
        latency_ms_p50= main_timing["latency_ms"]["with_tokenization"]["p50"],
        latency_ms_p95=main_timing["latency_ms"]["with_tokenization"]["p95"],
        throughput_per_s=main_timing["throughput_per_s"], peak_rss_mb=main_timing["peak_rss_mb"],
        peak_rss_over_baseline_mb=main_timing["peak_rss_over_baseline_mb"], timings=timings,
        per_label_f1=[label["f1"] for label in metrics["per_label"]])


def _cascade_row(cascade: Artifact, runtime: str, variants: list[Variant], examples: Labelled,
                 probabilities: dict, predictions: dict, per_text_ms: dict) -> dict:
    """A cascade's row in one runtime, from its parts' rows: its rule's decisions on every text, and on each timed
    text the fast part's time plus the accurate part's when the rule escalates it (what the app waits for); both
    files' size; the share escalated and the mean latency (a cascade's point: most texts take the fast path)."""
    rule = cascade_rules(cascade)[runtime]
    parts = {variant.name: variant for variant in variants}
    fast, accurate = (parts[f"{cascade.path.name}/{rule[role]}"] for role in ("fast", "accurate"))
    sent = escalated(confidence(probabilities[fast.name], np.asarray(fast.thresholds), fast.single_label),
                     rule["threshold"])
    name = f"{cascade.path.name} ({runtime})"
    predictions[name] = np.where(sent[:, None], predictions[accurate.name], predictions[fast.name])
    metrics = classification_metrics(examples.targets, predictions[name], examples.labels)
    timed = np.asarray(per_text_ms[fast.name])
    ms = timed + sent[:len(timed)] * np.asarray(per_text_ms[accurate.name])
    latency = percentiles_ms(ms)
    return table.result_row(
        name, "cascade", f"{fast.arch}→{accurate.arch}", fast.runtime, f"{fast.precision}+{accurate.precision}",
        metrics, device="cpu", parity_passed=fast.parity_passed and accurate.parity_passed,
        size_bytes=fast.size_bytes + accurate.size_bytes, params=fast.params + accurate.params,
        latency_ms_p50=latency["p50"], latency_ms_p95=latency["p95"], latency_ms_mean=round(float(ms.mean()), 4),
        escalation_rate=float(sent.mean()), throughput_per_s=None, peak_rss_mb=None, peak_rss_over_baseline_mb=None,
        timings=[], per_label_f1=[label["f1"] for label in metrics["per_label"]])


def _native_cascade_row(cascade: Artifact, variants: list[Variant], native: list[dict]) -> dict:
    """A cascade's ``.pte`` files in the native runner, as the app runs them: on each timed text the fast part's
    time, plus the accurate part's when the fast part's native logits escalate it (and each part's Java tokenizer,
    end to end); the runner times each part on every text, so the sum is what the app's two calls take."""
    rule = cascade_rules(cascade)["executorch"]
    parts = {variant.name: variant for variant in variants}
    rows = {row["name"]: row for row in native}
    fast, accurate = (rows[f"{cascade.path.name}/{rule[role]}"] for role in ("fast", "accurate"))
    variant = parts[fast["name"]]
    probs = torch.sigmoid(torch.from_numpy(fast["per_text"]["logits"])).numpy()
    sent = escalated(confidence(probs, np.asarray(variant.thresholds), variant.single_label), rule["threshold"])
    ms = np.asarray(fast["per_text"]["ms"]) + sent * np.asarray(accurate["per_text"]["ms"])
    tokenized = [part["per_text"]["tokenize_ms"] for part in (fast, accurate)]
    end_to_end = None if None in tokenized else (ms + np.asarray(tokenized[0]) + sent * np.asarray(tokenized[1]))
    return {"name": f"{cascade.path.name} (executorch)", "arch": f"{fast['arch']}→{accurate['arch']}",
            "precision": f"{fast['precision']}+{accurate['precision']}",
            "size_bytes": fast["size_bytes"] + accurate["size_bytes"], "texts": fast["texts"], "threads": 1,
            "cold_start_ms": None, "load_ms": None, "first_inference_ms": None, "peak_rss_mb": None,
            "latency_ms": percentiles_ms(ms), "latency_ms_mean": round(float(ms.mean()), 4),
            "escalation_rate": float(sent.mean()),
            "logits_equal_python": fast["logits_equal_python"] and accurate["logits_equal_python"],
            "max_abs_logit_difference": max(fast["max_abs_logit_difference"], accurate["max_abs_logit_difference"]),
            "tokenize_jvm_ms": None, "end_to_end_ms": None if end_to_end is None else percentiles_ms(end_to_end),
            "tokenize_share": None if end_to_end is None else round(1 - float(ms.sum() / end_to_end.sum()), 3),
            "profile": None, "others_cpu_share": max(fast["others_cpu_share"], accurate["others_cpu_share"])}


def _tfidf_rows(dataset: Dataset, examples: Labelled, timing_texts: list[str], throughput_texts: list[str],
                predictions: dict) -> list[dict]:
    """The TF-IDF baselines (``tune_tfidf_baselines``: logistic regression, linear SVM, complement naive Bayes, each
    with its C or alpha chosen on val), fitted on the training split of ``dataset`` and timed in this process; the
    one of best val micro-F1 is marked ``best_baseline_on_val``."""
    tuned = tune_tfidf_baselines(dataset.texts("train"), dataset.targets("train", np.uint8), dataset.texts("val"),
                                 dataset.targets("val", np.uint8), language=dataset.language,
                                 multi_label=dataset.multi_label)
    best = max(tuned, key=lambda one: one.val_micro_f1)
    rows = []
    for one in tuned:
        predictions[one.name] = one.baseline.predict(examples.texts)
        metrics = classification_metrics(examples.targets, predictions[one.name], examples.labels)
        seconds = []
        for text in timing_texts:
            start = time.perf_counter()
            one.baseline.predict([text])
            seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        for first in range(0, len(throughput_texts), 128):
            one.baseline.predict(throughput_texts[first:first + 128])
        throughput = round(len(throughput_texts) / (time.perf_counter() - start), 1)
        latency = percentiles_ms(np.asarray(seconds) * 1000)
        rows.append(table.result_row(
            one.name, "baseline", one.name, "sklearn", "fp64", metrics, device="cpu", parity_passed=None,
            size_bytes=one.baseline.size_bytes, params=one.baseline.params, latency_ms_p50=latency["p50"],
            latency_ms_p95=latency["p95"], throughput_per_s=throughput, peak_rss_mb=None,
            peak_rss_over_baseline_mb=None, timings=[], setting=one.setting, tried=one.tried,
            val_micro_f1=one.val_micro_f1,
            best_baseline_on_val=one is best, per_label_f1=[label["f1"] for label in metrics["per_label"]]))
    return rows


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.exists() else []
    return models[0] if models else platform.processor() or platform.machine()


def machine() -> dict:
    """Where a report was measured: CPU model, threads, GPU (None without CUDA)."""
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def provenance() -> dict:
    """When and with what a result was measured: the UTC date, mobclf's version, and the git commit of the mobclf
    checkout it ran from (``+`` when that had uncommitted changes; None outside a checkout)."""
    made = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "mobclf": version("mobclf"), "commit": None}
    toolkit = Path(__file__).resolve().parents[2]
    if not (toolkit.name == "toolkit" and (toolkit.parent / "pyproject.toml").is_file()):  # an installed copy
        return made

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=toolkit, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    if commit is not None:
        made["commit"] = commit + ("+" if git("status", "--porcelain", "--", ".") else "")
    return made


def pareto_front(rows: list[dict], cost: str) -> list[dict]:
    """Rows no other row beats on both micro-F1 (higher) and ``cost`` (lower), cheapest first."""
    ranked = sorted((row for row in rows if row[cost] is not None), key=lambda row: (row[cost], -row["micro_f1"]))
    front, best = [], -1.0
    for row in ranked:
        if row["micro_f1"] > best:
            front.append(row)
            best = row["micro_f1"]
    return front


BENCH_COLUMNS = [table.NAME, table.RUNTIME, table.WEIGHTS, table.MICRO_F1, table.MACRO_F1, table.SHARE_OF_TEACHER,
                 table.AGREEMENT, table.SIZE_MB, table.PARAMS, table.LATENCY, table.FASTER_THAN_TEACHER,
                 table.THROUGHPUT, table.MEMORY_ADDED]
NATIVE_COLUMNS = [
    table.Column("model", lambda row, _: row["name"] + ("" if row.get("escalation_rate") is None else
                                                       f" ({100 * row['escalation_rate']:.1f}% escalated)"),
                 numeric=False), table.WEIGHTS, table.SIZE_MB,
    table.Column("cold start median [min–max] (ms)", lambda row, _: "—" if row["cold_start_ms"] is None else
                 "{median:.1f} [{min:.1f}–{max:.1f}]".format(**row["cold_start_ms"])),
    table.Column("load (ms)", table.number("load_ms", "{:.2f}")),
    table.Column("first inference (ms)", table.number("first_inference_ms", "{:.2f}")),
    table.Column("model p50 / p95 (ms)", lambda row, _: "{p50:.3f} / {p95:.3f}".format(**row["latency_ms"])),
    table.Column("model mean (ms)", lambda row, _: "—" if row.get("latency_ms_mean") is None else
                 f"{row['latency_ms_mean']:.3f}"),
    table.Column("mean exit layer (= Python's)", lambda row, _: "—" if row.get("mean_exit_layer") is None else
                 f"{row['mean_exit_layer']:.2f} ({'yes' if row['exit_layers_equal_python'] else 'no'})"),
    table.Column("Java tokenizer p50 (ms)", lambda row, _: "—" if row.get("tokenize_jvm_ms") is None else
                 f"{row['tokenize_jvm_ms']['p50']:.4f}"),
    table.Column("end to end p50 / p95 (ms)", lambda row, _: "—" if row.get("end_to_end_ms") is None else
                 "{p50:.3f} / {p95:.3f}".format(**row["end_to_end_ms"])),
    table.Column("tokenizer share", lambda row, _: "—" if row.get("tokenize_share") is None else
                 f"{row['tokenize_share']:.0%}"),
    table.Column("× faster than teacher (p50)", lambda row, teacher: table.times_faster(
        (row.get("end_to_end_ms") or row["latency_ms"])["p50"], teacher)),
    table.PEAK_RSS,
    table.Column("logits = Python's", lambda row, _: "yes" if row["logits_equal_python"] else
                 f"no (≤ {row['max_abs_logit_difference']:.2g})", numeric=False)]
NATIVE_TITLE = "Native: the ExecuTorch C++ runtime, as an app runs it"
PROFILE_COLUMNS = [table.Column("operator", lambda row, _: row["operator"], numeric=False),
                   table.Column("runs on", lambda row, _: row["runs_on"], numeric=False),
                   table.Column("ms per text", lambda row, _: f"{row['ms']:.4f}"),
                   table.Column("share of the call", lambda row, _: f"{row['share']:.0%}")]
PROFILE_ROWS = 10  # the slowest operators shown per program (report.json has them all)
BUSY = 0.10  # other processes' share of the CPUs above which a report's latencies are flagged


def write_report_files(report: dict, directory: Path) -> None:
    """The PNG plots, report.json, and report.md and report.html (the same tables, notes and plots)."""
    plots = _plots(report, directory)
    (directory / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / "report.md").write_text(markdown(report, plots), encoding="utf-8")
    native = (f"<h2>{html.escape(NATIVE_TITLE)}</h2>"
              f"{table.html_table(NATIVE_COLUMNS, report['native'], _baseline(report))}"
              + _paragraphs([_native_note(report)])) if report.get("native") else ""
    native += "".join(f"<h3>{html.escape(title)}</h3>{table.html_table(PROFILE_COLUMNS, rows, None)}"
                      f"{_paragraphs([note])}" for title, rows, note in _profiles(report))
    images = "".join(f'<h2>{html.escape(title)}</h2><img src="{name}" alt="{html.escape(title)}">'
                     for name, title in plots)
    (directory / "report.html").write_text(
        table.html(_title(report), BENCH_COLUMNS, report["rows"], _baseline(report),
                   before=_paragraphs(_context(report)), after=_paragraphs(_notes(report)) + native + images),
        encoding="utf-8")


def _paragraphs(lines: list[str]) -> str:
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines)


def _title(report: dict) -> str:
    """"mobclf bench: <dataset> (test split, N texts)", or "(whole file, N texts)" for a labelled --file."""
    scope = "whole file" if report["split"] == "file" else f"{report['split']} split"
    texts = f", {report['texts']:,} texts" if "texts" in report else ""
    return f"mobclf bench: {report['dataset']} ({scope}{texts})"


def _baseline(report: dict) -> dict | None:
    return next((row for row in report["rows"] if row["name"] == report["baseline"]), None)


def _context(report: dict) -> list[str]:
    """Where and when it was measured, and a warning when other processes were busy meanwhile."""
    lines = []
    if "machine" in report:
        machine, made = report["machine"], report.get("provenance", {})
        lines.append(f"Measured {made.get('date', 'at an unrecorded date')} on {machine['cpu']} "
                     f"({machine['threads']} threads; GPU: {machine['gpu'] or 'none'}) with mobclf "
                     f"{made.get('mobclf', '?')}" + (f", commit {made['commit']}" if made.get("commit") else "") + ".")
    busiest = max((row.get("others_cpu_share") or 0 for row in [*report["rows"], *report.get("native", [])]),
                  default=0)
    if busiest > BUSY:
        lines.append(f"⚠ Other processes used up to {busiest:.0%} of the CPUs while variants were measured (load "
                     f"average {report.get('load_average_at_start', '?')} at the start): the latencies are not "
                     "the models' alone. Measure on an otherwise idle machine.")
    return lines


def _notes(report: dict) -> list[str]:
    threads = max((timing["threads"] for row in report["rows"] for timing in row["timings"]), default=1)
    timed = f"{report['timed_texts']} " if "timed_texts" in report else ""
    return [f"Latency: batch 1, tokenization included, {threads} thread(s), over {timed}real {report['split']} "
            "texts; each row's `timings` in report.json also has 1 thread and the model call alone.",
            "Memory added: how far the measuring process's peak RSS rose above its RSS before the model loaded (the "
            "~500 MB of Python and libraries left out; the whole peak is `peak_rss_mb` in report.json). What an app "
            "holds is in the native table.",
            "Agreement with teacher: the share of texts whose chosen label set equals the teacher's. % of teacher "
            "micro-F1: the row's micro-F1 over the teacher's; × faster than teacher: the teacher's latency p50 over "
            "the row's. Weights: the number format the model computes in "
            "(fp32; int8 quantized; fp64 for scikit-learn).", *_baselines_note(report)]


def _baselines_note(report: dict) -> list[str]:
    """Which C or alpha each TF-IDF baseline got on val, and which baseline was best there."""
    baselines = [row for row in report["rows"] if row.get("setting")]
    if not baselines:
        return []
    chosen = "; ".join(f"{row['name']} {key}={value:g} of {{{', '.join(f'{v:g}' for v in row['tried'])}}} (val "
                       f"micro-F1 {row['val_micro_f1']:.4f})" for row in baselines
                       for key, value in row["setting"].items())
    best = next(row["name"] for row in baselines if row["best_baseline_on_val"])
    return [f"Baselines: TF-IDF n-grams (scikit-learn) with logistic regression (tfidf-lr), a linear SVM (tfidf-svm) "
            f"and complement naive Bayes (tfidf-nb), fitted on the training split, each with the setting of best "
            f"val micro-F1: {chosen}. The best baseline on val: {best}."]


def _native_note(report: dict) -> str:
    texts = report["native"][0]["texts"]
    return ("Each .pte in mobclf's C++ runner (toolkit/mobclf/native), linked against the ExecuTorch SDK of the "
            "executorch wheel, at 1 thread. Cold start: a whole process, from its start to its exit after the first "
            "logits (dynamic linking, loading the memory-mapped program, one inference; the file in the page cache). "
            f"Model p50 / p95: the model call alone over {texts} real texts after a warm-up. Java tokenizer: the "
            "app's own tokenizer (android-demo, org.mobclf.core) on the JVM over the same texts, warm, each text the "
            "median of 9 encodes; end to end: tokenizer + model, text by text; tokenizer share: its part of the "
            "end-to-end time; × faster than teacher: the teacher's latency p50 in the table above (in Python, "
            "tokenization included) over the end-to-end p50. Peak RSS: the runner process (VmHWM): the runtime and "
            "the model, nothing else. Logits: compared with the Python runtime's on every one of those texts. An "
            "early-exit program runs its methods chained by its rule, as the app does; its exit layers are compared "
            "with the Python runtime's too. A cascade's row: on each text the fast file's time, plus the accurate "
            "file's when the fast file's native logits escalate the text (each part's tokenizer end to end).")


def _profiles(report: dict) -> list[tuple[str, list[dict], str]]:
    """(title, slowest operators, totals) of each native row's per-operator profile."""
    sections = []
    for row in report.get("native", []):
        profile = row.get("profile")
        if not profile:
            continue
        call = profile["execute_ms"] or 1.0
        rows = [{**operator, "share": operator["ms"] / call} for operator in profile["operators"][:PROFILE_ROWS]]
        overhead = profile["execute_ms"] - profile["xnnpack_ms"] - profile["portable_ms"]
        sections.append((f"Where the time goes: {row['name']}", rows,
                         f"One call ({profile['texts']} texts, traced with ETDump): {profile['execute_ms']:.4f} ms; "
                         f"XNNPACK {profile['xnnpack_ms']:.4f} ms, portable kernels {profile['portable_ms']:.4f} ms, "
                         f"the runtime between them {overhead:.4f} ms. The slowest {len(rows)} operators (all of "
                         "them in report.json)."))
    return sections


def markdown(report: dict, plots: list[tuple[str, str]] = ()) -> str:
    """report.md: context, the variants' table and its notes, the native table with each program's profile, the
    plots."""
    text = table.markdown(_title(report), BENCH_COLUMNS, report["rows"], _baseline(report), _notes(report),
                          before=_context(report))
    if report.get("native"):
        text += "\n" + table.markdown(NATIVE_TITLE, NATIVE_COLUMNS, report["native"], _baseline(report),
                                      [_native_note(report)],
                                      level=2)
    for title, rows, note in _profiles(report):
        text += "\n" + table.markdown(title, PROFILE_COLUMNS, rows, None, [note], level=3)
    if plots:
        text += "\n## Plots\n\n" + "\n\n".join(f"![{title}]({name})" for name, title in plots) + "\n"
    return text


def _plots(report: dict, directory: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows, written = report["rows"], []
    for cost, unit, label, name in (("latency_ms_p50", 1, "batch-1 latency p50 (ms, log)", "f1_vs_latency.png"),
                                    ("size_bytes", 1e6, "model size (MB, log)", "f1_vs_size.png")):
        figure, axes = plt.subplots(figsize=(8.4, 4.2), dpi=80)
        for index, row in enumerate(rows):
            axes.scatter(row[cost] / unit, row["micro_f1"], s=30, marker="osD^v<>P"[index % 8],
                         color=f"C{index % 10}", label=row["name"])
        front = pareto_front(rows, cost)
        axes.step([row[cost] / unit for row in front], [row["micro_f1"] for row in front], where="post",
                  color="grey", linewidth=1, label="Pareto front")
        axes.set(xscale="log", xlabel=label, ylabel="micro-F1")
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        figure.tight_layout()
        figure.savefig(directory / name)
        plt.close(figure)
        written.append((name, f"micro-F1 against {label.split(' (')[0]}"))
    students = [row for row in rows if row["kind"] not in ("teacher", "baseline")]
    if report["baseline"] and students:
        best = max(students, key=lambda row: row["micro_f1"])
        teacher_f1, student_f1 = (np.asarray(report["per_label_f1"][key]) for key in (report["baseline"],
                                                                                        best["name"]))
        figure, axes = plt.subplots(figsize=(4.8, 4.8), dpi=80)
        many = len(teacher_f1) > 50  # hundreds of labels: small translucent points, and how many sit where
        axes.scatter(teacher_f1, student_f1, s=6 if many else 14, alpha=0.4 if many else 1.0)
        # every label's name when there are few; with many, the ones the student trails the teacher on most
        named = range(len(teacher_f1)) if len(teacher_f1) <= 30 else np.argsort(student_f1 - teacher_f1)[:8]
        for index in named if report.get("labels") else ():
            axes.annotate(report["labels"][index], (teacher_f1[index], student_f1[index]), fontsize=6,
                          xytext=(3, -3), textcoords="offset points")
        axes.plot([0, 1], [0, 1], color="grey", linewidth=1)
        axes.set(xlabel=f"teacher ({report['baseline']}) F1", ylabel=f"{best['name']} F1", xlim=(-0.02, 1.02),
                 ylim=(-0.02, 1.02), title=f"per-label F1, {len(teacher_f1)} labels: student ≥ teacher on "
                                           f"{int((student_f1 >= teacher_f1).sum())}")
        figure.tight_layout()
        figure.savefig(directory / "per_label_f1.png")
        plt.close(figure)
        written.append(("per_label_f1.png", f"per-label F1: teacher vs best student ({best['name']})"))
    return written
