"""Teacher outputs for distillation, computed once and cached on disk, read a batch at a time.

A BERT-base forward pass over 16k headlines takes minutes on a CPU, and every distillation run of an ablation needs
the same outputs, so they are stored under ``$MOBCLF_CACHE`` (default ``~/.cache/mobclf``), keyed by the teacher's
sha256 and the texts; an entry also serves requests for fewer layers than it holds. The cache never lives inside
an artifact (that would break its checksums).

An entry is a folder of ``.npy`` files (numpy's format), one per output and process: under torchrun each process
computes a contiguous share of the texts and writes its own shard, and ``entry.json`` (written last, by rank 0, with
every shard's rows and sha256) makes the entry whole. An entry that fails its checksums is ignored (and recomputed),
never trained on. Rows are read with ``os.pread`` when a batch asks for them: a distillation run holds the teacher
outputs of its batch, never the whole cache (logits of 200k texts × 605 labels are 0.5 GB; hint states far more).

Layer numbering follows ``hidden_states``: 0 is the embedding output, 1..N the transformer layers; attention of
layer k is the attention computed inside layer k.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mobclf.artifacts import Artifact, sha256_file
from mobclf.console import console, progress
from mobclf.data.dataset import Texts
from mobclf.errors import UserError
from mobclf.train import distributed
from mobclf.train.metrics import agreement
from mobclf.train.thresholds import predict_labels

ENTRY_FILE = "entry.json"


class _NpyRows:
    """The rows of one ``.npy`` file, read with ``os.pread`` when asked for (nothing is mapped or kept)."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            self.shape, _, self.dtype = read_header(handle)
            self.data_start = handle.tell()
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        buffers = out.reshape(len(rows), -1).view(np.uint8)
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            for buffer, row in zip(buffers, rows.tolist()):
                os.preadv(descriptor, [buffer], self.data_start + row * self.row_bytes)
        finally:
            os.close(descriptor)
        return out


class _NpyWriter:
    """Writes one ``.npy`` file of ``rows`` rows a batch at a time (the header first: the shape is known)."""

    def __init__(self, path: Path, rows: int):
        self.path, self.rows, self.handle = path, rows, None

    def write(self, array: np.ndarray) -> None:
        if self.handle is None:
            self.handle = open(self.path, "wb")
            np.lib.format.write_array_header_2_0(self.handle, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                                                                "fortran_order": False,
                                                                "shape": (self.rows, *array.shape[1:])})
        self.handle.write(np.ascontiguousarray(array).tobytes())

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class TeacherOutputs:
    """One cache entry's outputs of N texts: ``logits`` [N, labels], ``cls_attention`` (the [CLS] row of the asked
    layers' attention, mean over heads and layers) [N, Lt] and ``hidden`` (hint-layer states, fp16) [N, Lt, H], with
    Lt the tokenizer's ``max_length``; ``rows(name, index)`` reads those of a batch from disk."""

    def __init__(self, entry: Path, files: dict[str, list[dict]]):
        self._shards = {name: [(shard["start"], shard["stop"], _NpyRows(entry / shard["file"])) for shard in shards]
                        for name, shards in files.items()}
        self.count = max((shards[-1]["stop"] for shards in files.values() if shards), default=0)

    def rows(self, name: str, index) -> torch.Tensor:
        """The rows ``index`` (in that order) of output ``name``."""
        index = np.asarray(index, dtype=np.int64)
        parts = self._shards[name]
        out = np.empty((len(index), *parts[0][2].shape[1:]), parts[0][2].dtype)
        for start, stop, rows in parts:
            inside = (index >= start) & (index < stop)
            if inside.any():
                out[inside] = rows.read(index[inside] - start)
        return torch.from_numpy(out)

    def all(self, name: str) -> torch.Tensor:
        return self.rows(name, np.arange(self.count))


def cache_dir() -> Path:
    return Path(os.environ.get("MOBCLF_CACHE", Path.home() / ".cache" / "mobclf")) / "teacher-outputs"


def check_layers(num_layers: int, hint_layer: int | None, attention_layers: list[int]) -> None:
    if hint_layer is not None and not 0 <= hint_layer <= num_layers:
        raise UserError(f"--hint-layer {hint_layer} is outside the teacher's layers 0..{num_layers}")
    bad = [layer for layer in attention_layers if not 1 <= layer <= num_layers]
    if bad:
        raise UserError(f"--attention-layers {bad} outside the teacher's layers 1..{num_layers}")


def _wanted(layers: dict) -> list[str]:
    return ["logits", *(["cls_attention"] if layers["attention_layers"] else []),
            *(["hidden"] if layers["hint_layer"] is not None else [])]


def _load_cached(source: str, layers: dict) -> TeacherOutputs | None:
    """The requested outputs of an intact cache entry (every shard matching the checksum in its ``entry.json``)
    for the same teacher and texts holding at least the requested layers: a run with every loss serves later runs
    with fewer."""
    for description in sorted(cache_dir().glob(f"{source}-*/{ENTRY_FILE}")):
        entry = description.parent
        try:
            stored = json.loads(description.read_text(encoding="utf-8"))
            files = {name: stored["files"][name] for name in _wanted(layers)}
            held = stored["layers"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if layers["hint_layer"] not in (None, held["hint_layer"]) or (
                layers["attention_layers"] and layers["attention_layers"] != held["attention_layers"]):
            continue
        try:
            intact = all(sha256_file(entry / shard["file"]) == shard["sha256"]
                         for shards in stored["files"].values() for shard in shards)
        except (OSError, KeyError, TypeError):
            intact = False
        if not intact:
            console.log(f"[yellow]teacher outputs: {entry} does not match its checksums; ignored and recomputed")
            continue
        console.log(f"teacher outputs: cached {entry}")
        return TeacherOutputs(entry, files)
    return None


def _source_key(teacher_sha256: str, texts: Texts) -> str:
    """What names the entries of one teacher on one list of texts (hashed a text at a time)."""
    digest = hashlib.sha256(teacher_sha256.encode("utf-8"))
    for text in texts:
        digest.update(b"\n" + text.encode("utf-8"))
    return digest.hexdigest()[:32]


@torch.no_grad()
def teacher_outputs(teacher: Artifact, model: torch.nn.Module, tokenizer, texts: Sequence[str], *,
                    hint_layer: int | None = None, attention_layers: list[int] = (), device: str | torch.device = "cpu",
                    batch_size: int = 64) -> TeacherOutputs:
    """Run the teacher over ``texts`` (or find the cached result) and keep only what the losses need, on disk."""
    attention_layers = list(attention_layers)
    if hint_layer is not None or attention_layers:
        check_layers(model.bert.config.num_hidden_layers, hint_layer, attention_layers)
    texts = Texts.of(texts)
    source = _source_key(teacher.sha256, texts)
    layers = {"hint_layer": hint_layer, "attention_layers": attention_layers}
    stored = _load_cached(source, layers)
    if stored is not None:
        return stored
    entry = cache_dir() / f"{source}-{hashlib.sha256(json.dumps(layers).encode()).hexdigest()[:16]}"
    partial = entry.with_name(entry.name + ".partial")
    if distributed.is_main():
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    distributed.barrier()

    if attention_layers:
        model.bert.set_attn_implementation("eager")  # sdpa returns no attention maps
    model.to(device).eval()
    rank, world, width = distributed.rank(), distributed.world_size(), tokenizer.max_length
    start, stop = rank * len(texts) // world, (rank + 1) * len(texts) // world  # this process's share
    writers = {name: _NpyWriter(partial / f"{name}-{rank:05d}-of-{world:05d}.npy", stop - start)
               for name in _wanted(layers)}
    with progress() as bar:
        task = bar.add_task("teacher outputs", total=stop - start, status="computed once, then cached")
        for first in range(start, stop, batch_size):
            encoded = tokenizer.encode_batch(texts[first:min(first + batch_size, stop)])
            batch = {key: encoded[key].to(device) for key in ("input_ids", "attention_mask")}
            out = model.encode(**batch, output_hidden_states=hint_layer is not None,
                               output_attentions=bool(attention_layers))
            pad = width - batch["input_ids"].shape[1]
            writers["logits"].write(out.logits.float().cpu().numpy())
            if attention_layers:
                cls_rows = torch.stack([out.attentions[layer - 1][:, :, 0, :].mean(1) for layer in attention_layers])
                writers["cls_attention"].write(F.pad(cls_rows.mean(0).float(), (0, pad)).cpu().numpy())
            if hint_layer is not None:
                writers["hidden"].write(F.pad(out.hidden_states[hint_layer].half(), (0, 0, 0, pad)).cpu().numpy())
            bar.advance(task, len(batch["input_ids"]))
    for writer in writers.values():
        writer.close()
    mine = {name: {"file": writer.path.name, "start": start, "stop": stop, "sha256": sha256_file(writer.path)}
            for name, writer in writers.items() if stop > start}
    shards = distributed.gather(mine)  # every process's, on every process
    files = {name: [part[name] for part in shards if name in part] for name in writers}
    if distributed.is_main():
        (partial / ENTRY_FILE).write_text(json.dumps({"layers": layers, "texts": len(texts), "files": files},
                                                     indent=1), encoding="utf-8")
        shutil.rmtree(entry, ignore_errors=True)  # a damaged entry of the same name
        partial.rename(entry)
    distributed.barrier()
    return TeacherOutputs(entry, files)


def teacher_predictions(teacher: Artifact, model: torch.nn.Module, tokenizer, texts: Sequence[str],
                        single_label: bool, device: str | torch.device = "cpu") -> np.ndarray:
    """The teacher's predicted label matrix for ``texts`` with its own thresholds (logits from the cache)."""
    logits = teacher_outputs(teacher, model, tokenizer, texts, device=device).all("logits")
    return predict_labels(torch.sigmoid_(logits).numpy(), np.asarray(teacher.manifest["thresholds"]), single_label)


def agreement_with_teacher(predictions: dict[str, np.ndarray], teacher: Artifact, model: torch.nn.Module, tokenizer,
                           dataset, device: str | torch.device = "cpu") -> dict[str, float]:
    """Per split of ``predictions`` (split → label matrix of another model on ``dataset``), the fraction of texts on
    which that model and the teacher predict the same label set."""
    return {split: agreement(ours, teacher_predictions(teacher, model, tokenizer, dataset.texts(split),
                                                       not dataset.multi_label, device))
            for split, ours in predictions.items()}
