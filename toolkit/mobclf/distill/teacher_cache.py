"""Teacher outputs for distillation, computed once and cached on disk.

A BERT-base forward pass over 16k headlines takes minutes on a CPU, and every distillation run of an ablation needs
the same outputs, so they are stored under ``$MOBCLF_CACHE`` (default ``~/.cache/mobclf``), keyed by the teacher's
sha256 and the texts; an entry also serves requests for fewer layers than it holds. The cache never lives inside
an artifact (that would break its checksums). Each entry has a ``.sha256`` beside it, written after the entry: an
entry that is truncated, edited or without its checksum is ignored (and recomputed), never trained on.

Layer numbering follows ``hidden_states``: 0 is the embedding output, 1..N the transformer layers; attention of
layer k is the attention computed inside layer k.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mobclf.artifacts import Artifact, sha256_file
from mobclf.console import console, progress
from mobclf.errors import UserError
from mobclf.train import distributed
from mobclf.train.batching import batch_indices, encode_texts
from mobclf.train.metrics import agreement
from mobclf.train.thresholds import predict_labels


@dataclass
class TeacherOutputs:
    """Per text: logits [N, labels]; [CLS] attention over teacher tokens [N, Lt]; hint-layer states [N, Lt, H]; the
    teacher tokens' character spans [N, Lt, 2] (with attention or states, to align them with a student's tokens)."""

    logits: torch.Tensor
    cls_attention: torch.Tensor | None
    hidden: torch.Tensor | None
    offsets: torch.Tensor | None


def cache_dir() -> Path:
    return Path(os.environ.get("MOBCLF_CACHE", Path.home() / ".cache" / "mobclf")) / "teacher-outputs"


def check_layers(num_layers: int, hint_layer: int | None, attention_layers: list[int]) -> None:
    if hint_layer is not None and not 0 <= hint_layer <= num_layers:
        raise UserError(f"--hint-layer {hint_layer} is outside the teacher's layers 0..{num_layers}")
    bad = [layer for layer in attention_layers if not 1 <= layer <= num_layers]
    if bad:
        raise UserError(f"--attention-layers {bad} outside the teacher's layers 1..{num_layers}")


def _checksum_file(entry: Path) -> Path:
    return entry.with_name(entry.name + ".sha256")


def _load_cached(source: str, layers: dict) -> dict[str, torch.Tensor] | None:
    """The requested tensors of an intact cache entry (checked against the checksum saved beside it) for the same
    teacher and texts holding at least the requested layers: a run with every loss serves later runs with fewer."""
    for path in sorted(cache_dir().glob(f"{source}-*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as entry:
                stored = json.loads(entry.metadata()["layers"])
        except (OSError, ValueError, KeyError, SafetensorError):
            stored = None  # a damaged header: said below, when its checksum fails
        if stored is not None and (layers["hint_layer"] not in (None, stored["hint_layer"]) or (
                layers["attention_layers"] and layers["attention_layers"] != stored["attention_layers"])):
            continue
        try:
            intact = _checksum_file(path).read_text(encoding="ascii").strip() == sha256_file(path)
        except (OSError, UnicodeDecodeError):
            intact = False
        if stored is None or not intact:
            console.log(f"[yellow]teacher outputs: {path} does not match its checksum; ignored and recomputed")
            continue
        console.log(f"teacher outputs: cached {path}")
        wanted = ["logits", *(["cls_attention"] if layers["attention_layers"] else []),
                  *(["hidden"] if layers["hint_layer"] is not None else [])]
        with safe_open(str(path), framework="pt") as entry:  # only what is asked for: an entry may hold gigabytes more
            return {key: entry.get_tensor(key) for key in wanted}
    return None


@torch.no_grad()
def teacher_outputs(teacher: Artifact, model: torch.nn.Module, tokenizer, texts: list[str], *,
                    hint_layer: int | None = None, attention_layers: list[int] = (), device: str | torch.device = "cpu",
                    batch_size: int = 64) -> TeacherOutputs:
    """Run the teacher over ``texts`` (or read the cached result) and keep only what the losses need."""
    attention_layers = list(attention_layers)
    check_layers(model.bert.config.num_hidden_layers, hint_layer, attention_layers)
    encoded = encode_texts(tokenizer, texts, offsets=hint_layer is not None or bool(attention_layers))
    source = hashlib.sha256("\n".join([teacher.sha256, *texts]).encode("utf-8")).hexdigest()[:32]
    layers = {"hint_layer": hint_layer, "attention_layers": attention_layers}
    stored = _load_cached(source, layers)
    if stored is not None:
        return TeacherOutputs(stored["logits"], stored["cls_attention"] if attention_layers else None,
                              stored["hidden"] if hint_layer is not None else None, encoded.offsets)
    path = cache_dir() / f"{source}-{hashlib.sha256(json.dumps(layers).encode()).hexdigest()[:16]}.safetensors"

    if attention_layers:
        model.bert.set_attn_implementation("eager")  # sdpa returns no attention maps
    model.to(device).eval()
    width = encoded.input_ids.shape[1]
    batches = batch_indices(len(texts), batch_size)
    mine = distributed.my_batches(batches)
    logits, attention, hidden = [], [], []
    with progress() as bar:
        task = bar.add_task("teacher outputs", total=sum(len(index) for index in mine),
                            status="computed once, then cached")
        for index in mine:
            batch = {k: v.to(device) for k, v in encoded.batch(index).items()}
            out = model.encode(**batch, output_hidden_states=hint_layer is not None,
                               output_attentions=bool(attention_layers))
            pad = width - batch["input_ids"].shape[1]
            logits.append(out.logits.float().cpu())
            if attention_layers:
                cls_rows = torch.stack([out.attentions[layer - 1][:, :, 0, :].mean(1) for layer in attention_layers])
                attention.append(torch.nn.functional.pad(cls_rows.mean(0).float().cpu(), (0, pad)))
            if hint_layer is not None:
                states = out.hidden_states[hint_layer].half().cpu()
                hidden.append(torch.nn.functional.pad(states, (0, 0, 0, pad)))
            bar.advance(task, len(index))
    logits = distributed.in_batch_order(logits, len(batches))
    attention = distributed.in_batch_order(attention, len(batches)) if attention_layers else []
    hidden = distributed.in_batch_order(hidden, len(batches)) if hint_layer is not None else []
    stored = {"logits": torch.cat(logits)}
    if attention:
        stored["cls_attention"] = torch.cat(attention)
    if hidden:
        stored["hidden"] = torch.cat(hidden)
    if distributed.is_main():
        _store(path, stored, layers)
    return TeacherOutputs(stored["logits"], stored.get("cls_attention"), stored.get("hidden"), encoded.offsets)


def _store(path: Path, stored: dict[str, torch.Tensor], layers: dict) -> None:
    """Write a cache entry, then its checksum (an entry without one is never read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file(stored, str(partial), metadata={"layers": json.dumps(layers)})
    _checksum_file(path).unlink(missing_ok=True)  # an entry without its checksum is never read
    partial.replace(path)
    checksum = _checksum_file(path).with_suffix(".partial-sha256")
    checksum.write_text(sha256_file(path) + "\n", encoding="ascii")
    checksum.replace(_checksum_file(path))


def teacher_predictions(teacher: Artifact, model: torch.nn.Module, tokenizer, texts: list[str],
                        single_label: bool, device: str | torch.device = "cpu") -> np.ndarray:
    """The teacher's predicted label matrix for ``texts`` with its own thresholds (logits from the cache)."""
    logits = teacher_outputs(teacher, model, tokenizer, texts, device=device).logits
    return predict_labels(torch.sigmoid(logits).numpy(), np.asarray(teacher.manifest["thresholds"]), single_label)


def agreement_with_teacher(predictions: dict[str, np.ndarray], teacher: Artifact, model: torch.nn.Module, tokenizer,
                           dataset, device: str | torch.device = "cpu") -> dict[str, float]:
    """Per split of ``predictions`` (split → label matrix of another model on ``dataset``), the fraction of texts on
    which that model and the teacher predict the same label set."""
    return {split: agreement(ours, teacher_predictions(teacher, model, tokenizer, dataset.texts(split),
                                                       not dataset.multi_label, device))
            for split, ours in predictions.items()}
