"""``mobclf prune``: structured pruning of a distilled student, then recovery distillation from the teacher.

Structured pruning removes whole filters, heads and FFN channels, so the pruned model is a smaller dense model
that runs faster everywhere (no sparse kernels needed). Channels are grouped by torch-pruning's dependency graph
(Fang et al., 2023, "DepGraph: Towards Any Structural Pruning"): removing a conv filter also removes its column
in the classifier, removing a head also removes its rows in the attention output projection.

- TextCNN: conv filters (each kernel size keeps its own count); the embedding and the classifier's outputs stay.
- TinyBERT: whole attention heads (Michel et al., 2019, "Are Sixteen Heads Really Better than One?") and FFN
  intermediate channels; hidden size, embeddings and classifier outputs stay.

Importance is the L2 norm of each channel's weights across its group (``magnitude``) or the first-order Taylor
estimate |w · ∂L/∂w| from a few training batches of the recovery loss (``taylor``, Molchanov et al., 2019).
``steps`` > 1 prunes iteratively: ratio·k/steps of the original channels are gone after step k, and every step is
followed by recovery. Recovery is distillation (``soft_kd`` + ``hard_bce`` from the loss registry, teacher logits
from the cache) through the one loop with early stopping on val micro-F1; thresholds are re-tuned at the end.

Vocabulary pruning keeps only the tokens seen in the training texts (special tokens always), in the tokenizer's
order, slices the embedding rows to match and saves the tokenizer with the smaller ``vocab.txt``: every text whose
tokens are all kept gets the same prediction as before. The pruned geometry is recorded in the manifest's
``architecture.config`` (TextCNN ``num_filters`` per kernel size, BERT ``layer_heads`` / ``layer_intermediate``)
so ``load_classifier`` rebuilds a plain module and loads its safetensors.

    config = PruneConfig(ratio=0.3, importance="taylor", steps=2, fit=FitConfig(epochs=3, lr=5e-4))
    pruned = run(config, source=Path("student"), data=Path("data"), out=Path("pruned"))
"""

from __future__ import annotations

import copy
import math
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from mobclf.artifacts import Artifact, load_artifact
from mobclf.console import console
from mobclf.data.dataset import load_dataset
from mobclf.distill.losses import PREDICTION_LOSSES, Batch, get_loss, prediction_matches, total_loss
from mobclf.distill.teacher_cache import agreement_with_teacher, teacher_outputs
from mobclf.errors import UserError
from mobclf.models import load_classifier
from mobclf.text import SPECIAL_TOKENS, TOKENIZERS, Tokenizer, load_tokenizer
from mobclf.train import distributed
from mobclf.train.batching import TokenizedTexts, batch_indices
from mobclf.train.classifier import tune_and_score, val_micro_f1, write_classifier
from mobclf.stages import FitConfig, PruneConfig
from mobclf.train.loop import FitResult, fit
from mobclf.train.state import open_state
from mobclf.train.losses import label_pos_weights

IMPORTANCE = {"magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
               "taylor": lambda: tp.importance.GroupTaylorImportance()}


def _loss_weights(config: PruneConfig) -> dict[str, float]:
    """The recovery losses with a non-zero weight (prediction losses only)."""
    weights = {name: weight for name, weight in config.losses.items() if weight}
    for name in weights:
        get_loss(name)  # unknown names: a UserError listing the registry
        if name not in PREDICTION_LOSSES:
            raise UserError(f"recovery trains the outputs only; use {' or '.join(PREDICTION_LOSSES)}, not {name!r}")
    if not weights:
        raise UserError("recovery needs soft_kd or hard_bce with a non-zero weight")
    return weights


def _teacher(source: Artifact, override: Path | None) -> Artifact:
    """The teacher to recover against: ``--teacher``, or the one in the student's lineage (checked to be that very
    artifact)."""
    if override is not None:
        return load_artifact(override, kind="teacher")
    teacher = source.ancestor("teacher", instead="pass --teacher DIR")
    if teacher is None:
        raise UserError("its lineage names no teacher; pass --teacher DIR", path=source.path)
    return teacher


def run(config: PruneConfig, *, source: Path, data: Path, out: Path, teacher: Path | None = None,
        force: bool = False) -> Artifact:
    """Prune a ``student`` (or ``pruned``) artifact, recover it by distillation from its teacher (``teacher``, or
    the one in its lineage), and write a ``pruned`` artifact. ``config.fit.epochs`` recovery epochs follow every
    pruning step (0: none, the pruned weights as they are)."""
    weights = _loss_weights(config)
    fit_config, device = config.fit, config.device
    threshold_objective, pos_weight_scheme = config.classifier.threshold_objective, config.classifier.pos_weight
    distributed.claim_output(out, force)
    source_artifact = load_artifact(source, kind=("student", "pruned"))
    model = load_classifier(source_artifact)
    arch = source_artifact.manifest["architecture"]["name"]
    if not hasattr(model, "prunable_groups"):
        raise UserError(f"is a {arch} model, which does not describe its prunable groups; mobclf prune takes a "
                        "TextCNN or TinyBERT student", path=source)
    teacher_artifact = _teacher(source_artifact, teacher)
    dataset = load_dataset(data)
    dataset.check_labels_of(source_artifact, teacher_artifact)
    temperature = config.temperature or source_artifact.manifest.get("distillation", {}).get("plan", {}).get(
        "temperature", 2.0)
    if fit_config.lr is None:  # recover at the rate the student trained at
        fit_config = replace(fit_config, lr=source_artifact.manifest.get("training", {}).get("config", {}).get(
            "lr", 1e-3))
    run_device = distributed.setup(device)
    torch.manual_seed(fit_config.seed)

    model.config = copy.deepcopy(model.config)  # pruning rewrites the geometry; the source manifest stays as read
    tokenizer = load_tokenizer(source_artifact.file("tokenizer"))
    texts = dataset.texts("train")
    before = _measure(model, tokenizer)
    console.log(f"{arch}: {before['params']:,} parameters, {before['macs']:,.0f} MACs per text of "
                f"{tokenizer.max_length} tokens")
    vocabulary = None
    if config.prune_vocab:
        model, tokenizer = prune_vocabulary(model, tokenizer, texts)
        vocabulary = {"before": before["vocab_size"], "after": len(tokenizer.vocab)}
        console.log(f"vocabulary: {vocabulary['before']:,} → {vocabulary['after']:,} tokens (those seen in the "
                    f"{len(texts):,} training texts)")

    teacher = load_classifier(teacher_artifact)
    teacher_tokenizer = load_tokenizer(teacher_artifact.file("tokenizer"))
    teacher_cache = teacher_outputs(teacher_artifact, teacher, teacher_tokenizer, texts, device=run_device)
    encoded = TokenizedTexts(tokenizer, texts)
    label_weights = label_pos_weights(dataset.label_counts("train"), len(texts), pos_weight_scheme).to(run_device)

    matches = prediction_matches(weights, temperature, dataset.multi_label)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        batch = {k: v.to(run_device) for k, v in encoded.batch(index).items()}
        targets = torch.from_numpy(dataset.targets("train", np.uint8, rows=index))  # made float by the loss
        teacher_side = {"logits": teacher_cache.rows("logits", index).to(run_device), "labels": targets.to(run_device)}
        return total_loss(matches, {"logits": model(**batch)}, teacher_side, Batch(label_weights=label_weights))

    def validate() -> float:
        return val_micro_f1(model, tokenizer, dataset, run_device)

    state = open_state(out, config, fit_config.restart, source=source_artifact.sha256, teacher=teacher_artifact.sha256,
                       data=dataset.artifact.sha256)
    steps, done, result = [], 0.0, FitResult(best_score=math.nan, best_epoch=0)
    for step in range(1, config.steps + 1):
        target = config.ratio * step / config.steps
        if config.importance == "taylor":
            _taylor_gradients(model, batch_loss, len(texts), fit_config, config.taylor_batches, run_device)
        model.cpu()
        _prune_step(model, encoded, 1 - (1 - target) / (1 - done), config)
        done = target
        model.to(run_device)
        record = {"step": step, "ratio": round(target, 4), **_measure(model, tokenizer),
                  "val_micro_f1_pruned": validate()}
        console.log(f"step {step}/{config.steps}: {record['params']:,} parameters, {record['macs']:,.0f} MACs, "
                    f"val micro-F1 {record['val_micro_f1_pruned']:.4f} before recovery")
        if fit_config.epochs:
            result = fit(model, len(texts), batch_loss, validate, fit_config, f"recovery {step}/{config.steps}",
                         checkpoint=state.checkpoint(f"recovery-{step}"), lengths=encoded.lengths)
            record["recovery"] = {"best_epoch": result.best_epoch, "val_micro_f1": result.best_score,
                                  "seconds": result.seconds, "history": result.history}
        steps.append(record)

    model.cpu()
    after = _measure(model, tokenizer)
    thresholds, info, metrics, predictions = tune_and_score(model, tokenizer, dataset, threshold_objective, "cpu")
    metrics["agreement_with_teacher"] = agreement_with_teacher(predictions, teacher_artifact, teacher,
                                                               teacher_tokenizer, dataset, run_device)
    console.log(f"pruned: {before['params']:,} → {after['params']:,} parameters, {before['macs']:,.0f} → "
                f"{after['macs']:,.0f} MACs; val micro-F1 {metrics['val']['micro_f1']:.4f}"
                + (" (per-label thresholds tuned on val)" if dataset.multi_label else "")
                + f", agreement with teacher on val {metrics['agreement_with_teacher']['val']:.4f}")
    extra = {"pruning": {
        "config": {**asdict(config), "temperature": temperature},
        "params_before": before["params"], "params_after": after["params"],
        "macs_before": before["macs"], "macs_after": after["macs"], "macs_input_length": tokenizer.max_length,
        "geometry_before": before["geometry"], "geometry_after": after["geometry"],
        "vocabulary": vocabulary, "steps": steps,
        "source": {"path": str(source_artifact.path.resolve()), "kind": source_artifact.kind,
                   "sha256": source_artifact.sha256},
        "teacher": {"path": str(teacher_artifact.path.resolve()), "sha256": teacher_artifact.sha256,
                    "micro_f1": {split: scores["micro_f1"]
                                 for split, scores in teacher_artifact.manifest["metrics"].items()}},
    }}
    if "distillation" in source_artifact.manifest:
        extra["distillation"] = source_artifact.manifest["distillation"]  # how the weights were first distilled
    artifact = write_classifier(out, "pruned", model, tokenizer, dataset,
                                [source_artifact, teacher_artifact, dataset.artifact], thresholds, info, metrics,
                                fit_config, result, extra, force)
    state.finish()
    return artifact


def _prune_step(model: nn.Module, encoded, ratio: float, config: PruneConfig) -> None:
    """Remove ``ratio`` of the current prunable channels (and heads) of ``model`` (on the CPU), in place: the model
    says which groups (``prunable_groups``) and describes the geometry that is left (``pruned_geometry``)."""
    example = tuple(encoded.batch(torch.arange(min(2, len(encoded)))).values())
    pruner = tp.pruner.MetaPruner(model, example, importance=IMPORTANCE[config.importance](), pruning_ratio=ratio,
                                  global_pruning=config.global_pruning, in_channel_groups={},
                                  out_channel_groups={},  # torch-pruning mutates its dict defaults
                                  **model.prunable_groups(ratio))
    pruner.step()
    model.zero_grad(set_to_none=True)
    model.config.update(model.pruned_geometry())


def _taylor_gradients(model: nn.Module, batch_loss, n_examples: int, fit_config: FitConfig, batches: int,
                      device: torch.device) -> None:
    """Accumulate the recovery loss's gradients over a few training batches (what Taylor importance reads)."""
    model.to(device).eval()  # no dropout: the gradients of the model that is pruned
    model.zero_grad(set_to_none=True)
    for index in batch_indices(n_examples, fit_config.batch_size, shuffle=True, seed=fit_config.seed)[:batches]:
        batch_loss(index).backward()


def _measure(model: nn.Module, tokenizer: Tokenizer) -> dict:
    """Parameters and MACs (torch-pruning's counter) for one text of the tokenizer's full length, and geometry."""
    example = (torch.full((1, tokenizer.max_length), tokenizer.unk_id, dtype=torch.long),
               torch.ones(1, tokenizer.max_length, dtype=torch.long))
    device = next(model.parameters()).device
    was_training = model.training
    macs, params = tp.utils.count_ops_and_params(model.eval(), tuple(x.to(device) for x in example))
    model.train(was_training)
    return {"params": int(params), "macs": float(macs), "vocab_size": model.word_embedding.num_embeddings,
            "geometry": model.pruned_geometry()}


def prune_vocabulary(model: nn.Module, tokenizer: Tokenizer, texts: list[str]) -> tuple[nn.Module, Tokenizer]:
    """Keep only the tokens seen in ``texts`` (and the special tokens), in the tokenizer's order.

    Returns ``model`` with its embedding rows sliced to the kept tokens (changed in place, ``config`` updated) and
    a tokenizer of the same type and options over the smaller vocabulary: a text whose tokens are all kept maps to
    the same embedding rows, so its logits do not change. (WordPiece: kept pieces still win the greedy longest
    match, so the kept texts split as before.)
    """
    embedding = model.word_embedding
    seen = {tokenizer.token_ids[token] for text in texts for token, _, _ in tokenizer.tokenize(text)
            if token in tokenizer.token_ids}
    seen |= {tokenizer.token_ids[token] for token in SPECIAL_TOKENS}
    if embedding.padding_idx is not None:
        seen.add(embedding.padding_idx)
    kept = sorted(seen)
    if len(kept) == len(tokenizer.vocab):
        return model, tokenizer
    padding = kept.index(embedding.padding_idx) if embedding.padding_idx is not None else None
    model.replace_word_embedding(nn.Embedding.from_pretrained(embedding.weight.detach()[kept].clone(), freeze=False,
                                                              padding_idx=padding))
    return model, _with_vocab(tokenizer, [tokenizer.vocab[i] for i in kept])


def _with_vocab(tokenizer: Tokenizer, vocab: list[str]) -> Tokenizer:
    """The same tokenizer (type, options, jieba dictionary) over another vocabulary, rebuilt as it would load."""
    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save(Path(directory))
        return TOKENIZERS[tokenizer.kind].from_saved(Path(directory), {**tokenizer.spec, "num_tokens": len(vocab)},
                                                     vocab)
