"""Measuring one variant at one thread count, in a fresh process (``measure_in_subprocess``), so that thread pools
are sized before anything loads and peak memory belongs to that variant alone.

- latency: batch 1 over real texts, after a warm-up, p50/p95 in ms, of the model call alone and of tokenization +
  model call (what an app waits for);
- throughput: texts per second at batch 128 (ExecuTorch programs are batch 1: one text after another);
- probabilities of every text of the split (for accuracy and agreement), when asked;
- peak memory: the process's peak RSS, and how far it rose above the RSS it had before the model was loaded.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import asdict

import numpy as np
import torch

from mobclf.bench.variants import Variant, open_predictor
from mobclf.train.classifier import predict_probs

WARMUP = 10
THROUGHPUT_BATCH = 128


def _memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB. Not ``ru_maxrss``: Linux carries that across
    fork + exec, so a spawned child would report its parent's peak."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


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
    result = {"threads": threads, "latency_ms": {"model": _percentiles(model_only),
                                                 "with_tokenization": _percentiles(end_to_end)},
              "throughput_per_s": round(throughput, 1), "throughput_batch": batch_size}
    if split_texts is not None:
        result["probs"] = predict_probs(predict, tokenizer, split_texts, description=f"{variant.name}: predicting")
    peak = _memory_mb("VmHWM")
    result["peak_rss_mb"] = round(peak, 1)
    result["peak_rss_over_baseline_mb"] = round(max(peak - rss_before, 0.0), 1)
    return result


def _child(arguments: tuple) -> dict:
    variant, *rest = arguments
    return measure(Variant(**variant), *rest)


def measure_in_subprocess(variant: Variant, threads: int, latency_texts: list[str], throughput_texts: list[str],
                          split_texts: list[str] | None) -> dict:
    """``measure`` in a fresh spawned process (its thread pools and peak RSS are its own)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_child, ((asdict(variant), threads, latency_texts, throughput_texts, split_texts),))
