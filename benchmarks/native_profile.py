"""One `.pte` in mobclf's native ExecuTorch runner at 1 thread over real texts: steady latency, peak RSS and where
the time goes (ETDump per operator), as `mobclf bench` reports it, to compare two builds of the same model without
a dataset artifact (issue 15). Run on an otherwise idle machine.

    python benchmarks/native_profile.py --pte bundle/model.pte --tokenizer bundle/tokenizer \
        --texts ../shared/data/thucnews/test.jsonl --count 300 --rounds 3
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import click

from mobclf.bench.measure import percentiles_ms
from mobclf.export.executorch import program_rows
from mobclf.native.runner import build_runner, operator_profile, run_pte
from mobclf.text import load_tokenizer

PATH = click.Path(exists=True, path_type=Path)


@click.command()
@click.option("--pte", type=PATH, required=True)
@click.option("--tokenizer", type=PATH, required=True, help="The bundle's (or artifact's) tokenizer folder.")
@click.option("--texts", type=PATH, required=True, help="JSONL with a 'text' per line.")
@click.option("--count", default=300, show_default=True, help="Texts (the first ones).")
@click.option("--min-length", default=4, show_default=True, help="The program's shortest input (bundle.json).")
@click.option("--rounds", default=3, show_default=True, help="Repeats; the median round is printed in full.")
def main(pte: Path, tokenizer: Path, texts: Path, count: int, min_length: int, rounds: int) -> None:
    with texts.open(encoding="utf-8") as lines:
        chosen = [json.loads(line)["text"] for _, line in zip(range(count), lines)]
    encoded = load_tokenizer(tokenizer).encode_batch(chosen)
    rows = program_rows(encoded["input_ids"], encoded["attention_mask"], min_length)
    runner = build_runner()
    measured = []
    for _ in range(rounds):
        profile = operator_profile(runner, pte, rows)
        run = run_pte(runner, pte, rows, threads=1, warmup=10)
        measured.append({"latency_ms": percentiles_ms(run.ms), "load_ms": run.load_ms, "peak_rss_mb": run.peak_rss_mb,
                         **profile})
    median = sorted(measured, key=lambda round_: round_["latency_ms"]["p50"])[rounds // 2]
    print(json.dumps({"texts": len(rows), "p50_ms_per_round": [r["latency_ms"]["p50"] for r in measured],
                      "p50_ms_median": statistics.median(r["latency_ms"]["p50"] for r in measured),
                      "median_round": {**median, "operators": median["operators"][:12]}}, indent=1))


if __name__ == "__main__":
    main()
