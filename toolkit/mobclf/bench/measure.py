"""Measuring one variant at one thread count, in a fresh process (``measure_in_subprocess``), so that thread pools
are sized before anything loads and peak memory belongs to that variant alone.

- latency: batch 1 over real texts, after a warm-up, p50/p95 in ms, of the model call alone and of tokenization +
  model call (what an app waits for);
- throughput: texts per second at batch 128 (ExecuTorch programs are batch 1: one text after another);
- probabilities of every text of the split (for accuracy and agreement), when asked;
- peak memory: the process's peak RSS, and how far it rose above the RSS it had before the model was loaded.

``measure_native`` measures a ``.pte`` in the native runner instead (``mobclf.native``): what an app pays, without
Python.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from mobclf.artifacts import load_artifact
from mobclf.bench.variants import Variant, exit_rule_of, open_predictor
from mobclf.text import load_tokenizer
from mobclf.train.classifier import predict_probs

WARMUP = 10
THROUGHPUT_BATCH = 128


def _memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB. Not ``ru_maxrss``: Linux carries that across
    fork + exec, so a spawned child would report its parent's peak."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def percentiles_ms(ms) -> dict:
    """p50 and p95 of timings in milliseconds, to 0.1 µs (a warm Java tokenizer takes about 1 µs a headline): the
    form every latency of a report takes."""
    return {"p50": round(float(np.percentile(ms, 50)), 4), "p95": round(float(np.percentile(ms, 95)), 4)}


def _synchronized(variant: Variant):
    if variant.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def measure(variant: Variant, threads: int, latency_texts: list[str], throughput_texts: list[str],
            split_texts: list[str] | None) -> dict:
    """Latency, throughput, peak memory and (if ``split_texts``) probabilities of one variant; runs in the
    current process."""
    rss_before = _memory_mb("VmRSS")
    predict, tokenizer = open_predictor(variant, threads)
    encoded = [tokenizer.encode_batch([text]) for text in latency_texts]
    for batch in encoded[:WARMUP]:
        predict(batch["input_ids"], batch["attention_mask"])
    model_only, end_to_end = [], []
    for text, batch in zip(latency_texts, encoded):
        start = _synchronized(variant)
        predict(batch["input_ids"], batch["attention_mask"])
        model_only.append(_synchronized(variant) - start)
        start = _synchronized(variant)
        fresh = tokenizer.encode_batch([text])
        predict(fresh["input_ids"], fresh["attention_mask"])
        end_to_end.append(_synchronized(variant) - start)
    batch_size = 1 if variant.runtime == "executorch" else THROUGHPUT_BATCH
    start = _synchronized(variant)
    for first in range(0, len(throughput_texts), batch_size):
        batch = tokenizer.encode_batch(throughput_texts[first:first + batch_size])
        predict(batch["input_ids"], batch["attention_mask"])
    throughput = len(throughput_texts) / (_synchronized(variant) - start)
    result = {"threads": threads, "latency_ms": {"model": percentiles_ms(np.asarray(model_only) * 1000),
                                                 "with_tokenization": percentiles_ms(np.asarray(end_to_end) * 1000)},
              "throughput_per_s": round(throughput, 1), "throughput_batch": batch_size,
              "per_text_ms": [round(seconds * 1000, 4) for seconds in end_to_end]}  # a cascade's parts add up
    if split_texts is not None:
        result["probs"] = predict_probs(predict, tokenizer, split_texts, description=f"{variant.name}: predicting")
    peak = _memory_mb("VmHWM")
    result["peak_rss_mb"] = round(peak, 1)
    result["peak_rss_over_baseline_mb"] = round(max(peak - rss_before, 0.0), 1)
    return result


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine since boot, CPU seconds of this process and its reaped children)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    machine_busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = sum(usage.ru_utime + usage.ru_stime for usage in (resource.getrusage(resource.RUSAGE_SELF),
                                                             resource.getrusage(resource.RUSAGE_CHILDREN)))
    return machine_busy, own


class OtherProcesses:
    """The share of the machine's CPU time that other processes took while the ``with`` block ran: busy time from
    ``/proc/stat`` (a hypervisor's steal included) less this process's and its finished children's, over wall time ×
    CPUs. Latencies measured beside a busy neighbour are not the model's (two torch processes on 2 cores: 4–20×)."""

    def __enter__(self) -> OtherProcesses:
        self._start = (time.perf_counter(), *_cpu_seconds())
        return self

    def __exit__(self, *exc) -> None:
        wall, busy, own = (now - then for now, then in zip((time.perf_counter(), *_cpu_seconds()), self._start))
        self.cpu_share = round(max(busy - own, 0.0) / (max(wall, 1e-9) * (os.cpu_count() or 1)), 3)


def _child(arguments: tuple) -> dict:
    variant, *rest = arguments
    return measure(Variant(**variant), *rest)


def measure_in_subprocess(variant: Variant, threads: int, latency_texts: list[str], throughput_texts: list[str],
                          split_texts: list[str] | None) -> dict:
    """``measure`` in a fresh spawned process (its thread pools and peak RSS are its own)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_child, ((asdict(variant), threads, latency_texts, throughput_texts, split_texts),))


def measure_native(variant: Variant, texts: list[str], cold_starts: int, jvm: bool) -> dict:
    """An ExecuTorch variant in the native runner at 1 thread: whole-process cold start (``cold_starts`` times),
    loading, first inference, steady p50/p95 over ``texts`` (model only) after a warm-up, and the runner's peak RSS;
    whether its logits equal the Python runtime's on every one of ``texts``; with ``jvm``, the app's Java tokenizer
    timed on the same texts (warm), and tokenize + model per text (end to end); and where the time goes, per
    operator (``operator_profile``, a separate traced run). An early-exit program runs its methods chained by its
    rule, in both runtimes: its row adds the mean exit layer and whether every text left where Python's did (no
    operator profile: its calls differ per text)."""
    from mobclf.export.early_exit import EarlyExitPteRunner
    from mobclf.export.executorch import PteRunner, program_rows
    from mobclf.native.jvm import jvm_encode_ms
    from mobclf.native.runner import ExitRule, build_runner, cold_start_ms, operator_profile, run_pte

    artifact = load_artifact(Path(variant.artifact))
    encoded = load_tokenizer(artifact.file("tokenizer")).encode_batch(texts)
    rows = program_rows(encoded["input_ids"], encoded["attention_mask"], variant.min_length)
    pte, runner = artifact.file(variant.file), build_runner()
    exits = ExitRule(exit_rule_of(artifact), variant.thresholds) if variant.arch == "early_exit_bert" else None
    native = run_pte(runner, pte, rows, threads=1, warmup=WARMUP, exits=exits)
    if exits is None:
        python_logits = np.concatenate([PteRunner(pte, variant.min_length)(ids, mask).numpy() for ids, mask in rows])
    else:
        python = EarlyExitPteRunner(pte, variant.min_length, exits.rule, variant.thresholds, variant.single_label)
        answers = [python.answer(ids, mask) for ids, mask in rows]
        python_logits = np.concatenate([logits.numpy() for logits, _ in answers])
        python_layers = np.concatenate([layers.numpy() for _, layers in answers])
    starts = cold_start_ms(runner, pte, rows[0], cold_starts, exits)
    tokenize = np.asarray(jvm_encode_ms(artifact.file("tokenizer"), texts)) if jvm else None
    end_to_end = None if tokenize is None else tokenize + np.asarray(native.ms)
    return {"name": variant.name, "arch": variant.arch, "precision": variant.precision,
            "size_bytes": variant.size_bytes, "texts": len(rows), "threads": 1,
            "cold_start_ms": {"median": round(float(np.median(starts)), 2), "min": round(min(starts), 2),
                              "max": round(max(starts), 2), "repeats": cold_starts},
            "load_ms": round(native.load_ms, 3), "first_inference_ms": round(native.first_inference_ms, 3),
            "latency_ms": percentiles_ms(native.ms), "latency_ms_mean": round(float(np.mean(native.ms)), 4),
            "peak_rss_mb": round(native.peak_rss_mb, 1),
            "logits_equal_python": bool(np.array_equal(native.logits, python_logits)),
            "max_abs_logit_difference": float(np.abs(native.logits - python_logits).max()),
            "tokenize_jvm_ms": None if tokenize is None else percentiles_ms(tokenize),
            "end_to_end_ms": None if end_to_end is None else percentiles_ms(end_to_end),
            "tokenize_share": None if tokenize is None else round(float(tokenize.sum() / end_to_end.sum()), 3),
            # per text, for a cascade's native row (``report._native_cascade_row``); not kept in report.json
            "per_text": {"ms": list(native.ms), "tokenize_ms": None if tokenize is None else tokenize.tolist(),
                         "logits": native.logits},
            **({"profile": operator_profile(runner, pte, rows)} if exits is None else
               {"profile": None, "mean_exit_layer": float(native.exit_layers.mean()),
                "exit_layers_equal_python": bool(np.array_equal(native.exit_layers, python_layers))})}
