"""``mobclf train-llm-teacher``: a local Qwen2 checkpoint fine-tuned to classify, as a distillation teacher (the
automotive-news study's Qwen + LoRA classifier).

The checkpoint's weights stay frozen; low-rank adapters (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large
Language Models", via ``peft``) on its linear layers and a new head on the last token (``models/causal_lm.py``) are
trained with the BERT teacher's loop: label-weighted BCE, early stopping on val micro-F1, per-label thresholds
tuned on val. The adapters are merged into the weights before the artifact is written, so the artifact is a plain
``qwen2`` teacher that every stage loads without ``peft``. It teaches through its predictions (soft targets);
hints and attention transfer, which match a BERT's layers, are refused.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from mobclf.artifacts import Artifact
from mobclf.console import console
from mobclf.data.dataset import load_dataset
from mobclf.errors import UserError
from mobclf.models import count_parameters
from mobclf.models.causal_lm import CausalLmClassifier
from mobclf.stages import LlmTeacherConfig
from mobclf.text.checkpoint import CheckpointTokenizer
from mobclf.train import distributed
from mobclf.train.teacher import fit_teacher


def run(config: LlmTeacherConfig, *, data: Path, checkpoint: Path, out: Path, force: bool = False) -> Artifact:
    """Fine-tune the Qwen2 ``checkpoint`` directory on a dataset artifact and write a ``teacher`` artifact to
    ``out``."""
    distributed.claim_output(out, force)
    dataset = load_dataset(data)
    torch.manual_seed(config.fit.seed)
    model = CausalLmClassifier.from_checkpoint(checkpoint, {"num_labels": len(dataset.labels),
                                                            "dropout": config.dropout, "lora": asdict(config.lora)})
    tokenizer = CheckpointTokenizer.from_checkpoint(checkpoint, config.max_length)
    rows = model.decoder.get_input_embeddings().num_embeddings
    if tokenizer.num_tokens > rows:
        raise UserError(f"its tokenizer has {tokenizer.num_tokens:,} tokens and the model {rows:,} embeddings; give "
                        "the checkpoint's own tokenizer files", path=checkpoint)
    adapters = LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=list(config.lora.modules))
    try:
        model.decoder = get_peft_model(model.decoder, adapters)
    except ValueError as err:  # peft: "Target modules {...} not found in the base model"
        raise UserError(f"--lora-modules: {str(err).splitlines()[0][:160]}") from None
    run_device = distributed.setup(config.device)
    model.to(run_device)
    trained = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    console.log(f"LLM teacher: {count_parameters(model):,} parameters, {trained:,} trained (LoRA rank "
                f"{config.lora.rank} and the head), on {run_device}")

    def merge_adapters(model: CausalLmClassifier) -> CausalLmClassifier:
        model.decoder = model.decoder.merge_and_unload()
        return model

    return fit_teacher(model, tokenizer, dataset, config, out, [dataset.artifact], {"checkpoint": str(checkpoint)},
                       run_device, force, finish=merge_adapters, checkpoint=str(Path(checkpoint).resolve()))
