"""What the LLM teacher costs per text, against the BERT-base teacher (issue 16): a teacher at the geometry of
Qwen2-0.5B (the smallest Qwen2: 24 layers × 896, 14 query and 2 key/value heads, FFN 4864, 151,936 tokens) with the
default LoRA adapters of `mobclf train-llm-teacher`, and one at bert-base-chinese's (12 × 768, 21,128 tokens), both
as mobclf builds them (`CausalLmClassifier`, `BertClassifier` with a [CLS] head) for THUCNews' 10 labels.

Per text, on THUCNews test headlines:
- inference (what distillation pays once per transfer text, and `bench` per text): one text at a time (p50) and in
  batches of 32, no gradients;
- training: a forward and backward pass in batches of 16 (the BERT fine-tunes every weight, the LLM its adapters
  and head; the optimizer step is left out).

The weights are random: a pass costs the same whatever they hold, and no checkpoint can be fetched here. Both
models read the same number of tokens per headline (its characters, plus [CLS] and [SEP] or the end token): the
real Qwen2 tokenizer joins frequent Chinese characters, so it would give fewer tokens and the LLM's figures are an
upper bound. Run it alone: a second process on the machine slows both.

    python benchmarks/llm_teacher_cost.py [--texts 64] [--threads 2]      # reads ../shared/data

Results: benchmarks/results/llm-teacher-cost.{json,md}.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import click
import torch
from common import DATA_ROOT, HERE
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config

from mobclf.bench.report import machine, provenance
from mobclf.models import count_parameters
from mobclf.models.bert import BertClassifier, bert_config
from mobclf.models.causal_lm import CausalLmClassifier, plain_config
from mobclf.stages import LoraSettings

LABELS = 10
MAX_LENGTH = 32  # the THUCNews teacher's
QWEN2_0_5B = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1000000.0)


def teachers() -> dict[str, tuple[torch.nn.Module, int]]:
    """name → (model, vocabulary size) of both teachers; the LLM wrapped with the default adapters."""
    bert = BertClassifier({"bert": bert_config(21128, 12, 768, 12, 3072, MAX_LENGTH), "head": "cls_linear",
                           "num_labels": LABELS})
    for parameter in bert.parameters():
        parameter.requires_grad_(True)
    llm = CausalLmClassifier({"qwen2": plain_config(QWEN2_0_5B), "num_labels": LABELS})
    lora = LoraSettings()
    llm.decoder = get_peft_model(llm.decoder, LoraConfig(r=lora.rank, lora_alpha=lora.alpha,
                                                         lora_dropout=lora.dropout, target_modules=lora.modules))
    return {"BERT-base teacher (bert-base-chinese geometry)": (bert, 21128),
            "LLM teacher (Qwen2-0.5B geometry, LoRA rank 8)": (llm, QWEN2_0_5B.vocab_size)}


def batches(lengths: list[int], size: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    """Random ids at the headlines' token counts, padded on the right per batch of ``size``."""
    generator = torch.Generator().manual_seed(0)
    out = []
    for start in range(0, len(lengths), size):
        chunk = lengths[start:start + size]
        ids = torch.randint(5, vocab, (len(chunk), max(chunk)), generator=generator)
        mask = (torch.arange(max(chunk))[None, :] < torch.tensor(chunk)[:, None]).long()
        out.append({"input_ids": ids * mask, "attention_mask": mask})
    return out


def seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(model: torch.nn.Module, vocab: int, lengths: list[int]) -> dict:
    """ms per text: one at a time (p50), batched by 32, and a training pass batched by 16."""
    model.eval()
    with torch.no_grad():
        singles = batches(lengths, 1, vocab)
        model(**singles[0])  # warm-up
        one = [seconds(lambda batch=batch: model(**batch)) * 1e3 for batch in singles]
        batched = sum(seconds(lambda batch=batch: model(**batch)) for batch in batches(lengths, 32, vocab))
    model.train()
    trained = sum(seconds(lambda batch=batch: model(**batch).sum().backward()) for batch in batches(lengths, 16, vocab))
    model.zero_grad(set_to_none=True)
    return {"params": count_parameters(model), "trained_params": sum(p.numel() for p in model.parameters()
                                                                     if p.requires_grad),
            "ms_per_text_one_at_a_time_p50": statistics.median(one),
            "ms_per_text_batch_32": batched * 1e3 / len(lengths), "ms_per_text_training_batch_16":
                trained * 1e3 / len(lengths)}


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=DATA_ROOT / "thucnews" / "test.jsonl",
              show_default=True)
@click.option("--texts", default=64, show_default=True, help="Headlines timed (the first ones of the file).")
@click.option("--threads", default=2, show_default=True)
def main(data: Path, texts: int, threads: int) -> None:
    torch.set_num_threads(threads)
    headlines = [json.loads(line)["text"] for line in data.read_text(encoding="utf-8").splitlines()[:texts]]
    lengths = [min(len(text) + 2, MAX_LENGTH) for text in headlines]
    load = os.getloadavg()[0]
    rows = []
    for name, (model, vocab) in teachers().items():
        rows.append({"name": name, **measure(model, vocab, lengths)})
        click.echo(f"{name}: {rows[-1]}")
    bert, llm = rows
    report = {"dataset": "thucnews", "split": "test", "texts": len(headlines),
              "mean_tokens": statistics.mean(lengths), "machine": {**machine(), "load_1min_at_start": load},
              **provenance(), "rows": rows,
              "llm_over_bert": {key: llm[key] / bert[key] for key in llm if key.startswith("ms_")}}
    results = HERE / "results"
    (results / "llm-teacher-cost.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    lines = [f"# LLM teacher vs BERT teacher: cost per text ({len(headlines)} THUCNews test headlines, "
             f"{report['mean_tokens']:.1f} tokens on average, {threads} threads, load {load:.2f} at start)", "",
             "| teacher | parameters | trained | ms/text one at a time (p50) | ms/text batch 32 | "
             "ms/text training (fwd+bwd, batch 16) |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['params'] / 1e6:.0f} M | {r['trained_params'] / 1e6:.2f} M | "
              f"{r['ms_per_text_one_at_a_time_p50']:.1f} | {r['ms_per_text_batch_32']:.1f} | "
              f"{r['ms_per_text_training_batch_16']:.1f} |" for r in rows]
    ratio = report["llm_over_bert"]
    lines += ["", f"LLM / BERT: {ratio['ms_per_text_one_at_a_time_p50']:.1f}× one at a time, "
                  f"{ratio['ms_per_text_batch_32']:.1f}× batched, {ratio['ms_per_text_training_batch_16']:.1f}× "
                  "in training. Random weights at the real geometries; both read the same token counts (an upper "
                  "bound for Qwen2's tokenizer, which joins frequent Chinese characters).", ""]
    (results / "llm-teacher-cost.md").write_text("\n".join(lines), encoding="utf-8")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
