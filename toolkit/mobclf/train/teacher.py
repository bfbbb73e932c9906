"""``mobclf train-teacher``: a BERT classifier trained with label-weighted BCE, early stopping on val micro-F1 and
per-label thresholds tuned on val."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mobclf.artifacts import MANIFEST, Artifact
from mobclf.console import console
from mobclf.data.dataset import Dataset, load_dataset
from mobclf.errors import UserError
from mobclf.models import count_parameters, set_dropout
from mobclf.models.bert import BertClassifier, bert_config
from mobclf.text import build_tokenizer, tokenizer_from_vocab
from mobclf.train.batching import TokenizedTexts
from mobclf.train.classifier import tune_and_score, val_micro_f1, write_classifier
from mobclf.stages import LlmTeacherConfig, TeacherConfig
from mobclf.train import distributed
from mobclf.train.loop import fit
from mobclf.train.state import open_state
from mobclf.train.losses import label_pos_weights, weighted_bce
from mobclf.train.pretrain import open_pretrained


def head_config(config: TeacherConfig, labels: int) -> dict:
    """The head's part of a ``BertClassifier`` config: its kind, and the sizes of the CNN or BiLSTM it has."""
    head = {"head": config.head, "num_labels": labels}
    if config.head in ("cnn", "bilstm_cnn_attn"):
        head.update(kernel_sizes=list(config.kernel_sizes), num_filters=config.num_filters)
    if config.head in ("rnn", "bilstm_cnn_attn"):
        head["rnn_hidden"] = config.rnn_hidden
    return head


def run(config: TeacherConfig, *, data: Path, out: Path, init: Path | None = None, force: bool = False) -> Artifact:
    """Train a BERT teacher on a dataset artifact and write a ``teacher`` artifact to ``out``.

    ``init`` is a ``pretrained`` artifact (its encoder and tokenizer; it joins the lineage) or a local HF BERT
    checkpoint directory with its ``vocab.txt``.
    """
    distributed.claim_output(out, force)
    dataset = load_dataset(data)
    torch.manual_seed(config.fit.seed)
    train_texts = dataset.texts("train")
    parents = [dataset.artifact]
    if init is not None:
        if (Path(init) / MANIFEST).is_file():
            pretrained, checkpoint, tokenizer = open_pretrained(init, config.max_length)
            parents.append(pretrained)
        else:
            checkpoint, vocab_file = Path(init), Path(init) / "vocab.txt"
            if not vocab_file.is_file():
                raise UserError("no vocab.txt in the checkpoint directory; --init needs a BERT checkpoint with its "
                                "vocab", path=init)
            tokenizer = tokenizer_from_vocab(vocab_file, max_length=config.max_length, add_special_tokens=True)
        model = BertClassifier.from_checkpoint(checkpoint, head_config(config, len(dataset.labels)))
    else:
        tokenizer = build_tokenizer(config.tokenizer, train_texts, max_length=config.max_length,
                                    add_special_tokens=True, vocab_size=config.vocab_size, min_freq=config.min_freq)
        encoder = bert_config(len(tokenizer.vocab), config.layers, config.hidden, config.heads, config.intermediate,
                              config.max_length)
        model = BertClassifier({"bert": encoder, **head_config(config, len(dataset.labels))})
    run_device = distributed.setup(config.device)
    set_dropout(model, config.dropout).to(run_device)
    console.log(f"teacher: {count_parameters(model):,} parameters, vocab {len(tokenizer.vocab):,}, on {run_device}")
    return fit_teacher(model, tokenizer, dataset, config, out, parents, {"init": str(init) if init else None},
                       run_device, force, init=init)


def fit_teacher(model: nn.Module, tokenizer, dataset: Dataset, config: TeacherConfig | LlmTeacherConfig, out: Path,
                parents: list[Artifact], extra: dict, run_device: torch.device, force: bool,
                finish: Callable[[nn.Module], nn.Module] = lambda model: model, **inputs) -> Artifact:
    """Train a teacher ``model`` (on ``run_device``) with label-weighted BCE and early stopping on val micro-F1,
    ``finish`` it (the LLM teacher merges its adapters), tune per-label thresholds on val and write the ``teacher``
    artifact; ``inputs`` (besides the dataset) name what a saved training state must have been made from."""
    fit_config = config.fit
    pos_weight_scheme, threshold_objective = config.classifier.pos_weight, config.classifier.threshold_objective
    train_texts = dataset.texts("train")
    encoded = TokenizedTexts(tokenizer, train_texts)
    pos_weight = label_pos_weights(dataset.label_counts("train"), len(train_texts), pos_weight_scheme).to(run_device)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        batch = {k: v.to(run_device) for k, v in encoded.batch(index).items()}
        targets = torch.from_numpy(dataset.targets("train", np.uint8, rows=index))  # made float by the loss
        return weighted_bce(model(**batch), targets.to(run_device), pos_weight)

    multi = dataset.multi_label  # epochs are scored at threshold 0.5 (val_micro_f1), the artifact at tuned ones
    state = open_state(out, config, fit_config.restart, data=dataset.artifact.sha256, **inputs)
    result = fit(model, len(train_texts), batch_loss, lambda: val_micro_f1(model, tokenizer, dataset, run_device),
                 fit_config, "teacher", checkpoint=state.checkpoint("teacher"),
                 score_name="val micro-F1 (threshold 0.5)" if multi else "val micro-F1", lengths=encoded.lengths)
    model = finish(model)
    thresholds, info, metrics, _ = tune_and_score(model, tokenizer, dataset, threshold_objective, run_device)
    scores = f"val micro-F1 {metrics['val']['micro_f1']:.4f}" + (
        f", test micro-F1 {metrics['test']['micro_f1']:.4f}" if "test" in metrics else "")
    console.log(f"teacher: best epoch {result.best_epoch}, " + (
        f"val micro-F1 {result.best_score:.4f} at threshold 0.5; with per-label thresholds tuned on val: {scores}"
        if multi else scores))
    extra = {"loss": {"name": "weighted_bce", "pos_weight_scheme": pos_weight_scheme}, **extra}
    artifact = write_classifier(out, "teacher", model, tokenizer, dataset, parents, thresholds, info, metrics,
                                fit_config, result, extra, force)
    state.finish()
    return artifact
