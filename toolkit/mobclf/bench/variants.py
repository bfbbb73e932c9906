"""What ``mobclf bench`` compares: every model an artifact offers, in the runtime it runs in.

- a teacher: fp32 eager (on CUDA when there is one, as a server would run it; otherwise CPU);
- a student or pruned model: fp32 eager on CPU;
- a quantized artifact: its ``model.pte`` in the ExecuTorch runtime or ``model.onnx`` in onnxruntime;
- an export bundle: each of its files in its runtime;
- a cascade: the files its rules use (``bench`` adds a row for each rule, from theirs).

A ``Variant`` is plain data (it crosses into the measuring subprocess); ``open_predictor`` turns it into a callable
``(input_ids, attention_mask) → logits`` and its tokenizer there. ``open_model`` is the same thing for one process
that wants answers, not timings (``mobclf predict``, ``mobclf eval``): any model artifact or bundle file as a
``Predictor`` with its own tokenizer, labels, thresholds and decision rule.

    model = open_model(Path("bundle"), file="model.onnx")
    probs = model.probs(["央行宣布下调存款准备金率"])   # [N, labels], in the file's runtime
    chosen = model.decide(probs)                         # multi-hot [N, labels], the phone's decision
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mobclf.artifacts import Artifact, load_artifact
from mobclf.errors import UserError
from mobclf.export.exportable import min_length
from mobclf.models import WEIGHTS, build_model, load_classifier
from mobclf.text import load_tokenizer
from mobclf.train.batching import TokenizedTexts, batch_indices, predict_logits
from mobclf.train.thresholds import predict_labels

KINDS = ("teacher", "student", "pruned", "quantized", "export", "cascade")


@dataclass
class Variant:
    name: str
    kind: str  # the DESIGN.md row kind: teacher | student | pruned | quantized
    arch: str
    runtime: str  # eager | executorch | onnxruntime
    precision: str
    artifact: str  # artifact directory
    file: str  # the model file inside it
    params: int
    size_bytes: int
    thresholds: list[float]
    device: str = "cpu"
    min_length: int = 1  # exported files: the shortest input they take
    parity_passed: bool | None = None  # bundle files: whether the export's parity certificate passed
    single_label: bool = False  # the decision rule: argmax (single-label) or thresholds (multi-label)


def variants_of(artifact: Artifact) -> list[Variant]:
    """The variants one artifact (loaded with ``kind=KINDS``) offers, named after its directory (plus the file for
    bundles)."""
    manifest, name = artifact.manifest, artifact.path.name
    if artifact.kind == "cascade":
        from mobclf.cascade import part_variants

        return part_variants(artifact)
    if artifact.kind in ("teacher", "student", "pruned"):
        device = "cuda" if artifact.kind == "teacher" and torch.cuda.is_available() else "cpu"
        return [_variant(artifact, name, artifact.kind, manifest["architecture"]["name"], "eager", "fp32", WEIGHTS,
                         manifest["params"], manifest["thresholds"], device,
                         single_label=not manifest["multi_label"])]
    if artifact.kind == "quantized":
        quantization = manifest["quantization"]
        return [_variant(artifact, name, "quantized", manifest["architecture"]["name"],
                         _runtime(quantization["runtime"]), "int8", quantization["file"], manifest["params"],
                         manifest["thresholds"], shortest=min_length(build_model(manifest["architecture"])),
                         single_label=not manifest["multi_label"])]
    bundle = json.loads(artifact.file(manifest["bundle"]).read_text(encoding="utf-8"))
    return [_variant(artifact, f"{name}/{described['file']}", "quantized" if described["precision"] == "int8" else
                     bundle["model"]["source_kind"], bundle["model"]["architecture"], _runtime(described["runtime"]),
                     described["precision"], described["file"], bundle["model"]["params"], bundle["thresholds"],
                     shortest=bundle["inputs"]["min_length"],
                     parity_passed=bool(manifest["parity"].get(described["file"], {}).get("passed")),
                     single_label=bundle["output"]["decision"] == "argmax")
            for described in bundle["model"]["files"].values()]


def _runtime(name: str) -> str:
    return "onnxruntime" if name == "onnx" else name


def _variant(artifact: Artifact, name: str, kind: str, arch: str, runtime: str, precision: str, file: str,
             params: int, thresholds: list[float], device: str = "cpu", shortest: int = 1,
             parity_passed: bool | None = None, single_label: bool = False) -> Variant:
    return Variant(name, kind, arch, runtime, precision, str(artifact.path), file, params,
                   artifact.file(file).stat().st_size, thresholds, device, shortest, parity_passed, single_label)


def open_predictor(variant: Variant, threads: int | None, artifact: Artifact | None = None):
    """``(predictor, tokenizer)`` for ``variant``, with ``threads`` CPU threads (None: leave the thread pools as they
    are); with threads, call before loading any other ExecuTorch program in this process (its thread pool can only
    be sized first). ``artifact``: the variant's artifact when it is loaded already (not verified again)."""
    artifact = artifact or load_artifact(Path(variant.artifact))
    tokenizer = load_tokenizer(artifact.file("tokenizer"))
    if threads is not None:
        torch.set_num_threads(threads)
    if variant.runtime == "eager":
        model = load_classifier(artifact).to(variant.device)

        def predict(input_ids, attention_mask):
            with torch.no_grad():
                logits = model(input_ids.to(variant.device), attention_mask.to(variant.device)).float().cpu()
            return logits
        predict.model = model  # for a predictor that reads more than the logits (early exit: the exit layers)
        return predict, tokenizer
    if variant.runtime == "executorch":
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        from mobclf.export.executorch import PteRunner
        from mobclf.quiet import native_stderr

        if threads is not None:
            with native_stderr():
                _unsafe_reset_threadpool(threads)
        if variant.arch == "early_exit_bert":  # a method per layer, chained (export/early_exit.py)
            from mobclf.export.early_exit import EarlyExitPteRunner

            return EarlyExitPteRunner(artifact.file(variant.file), variant.min_length, exit_rule_of(artifact),
                                      variant.thresholds, variant.single_label), tokenizer
        return PteRunner(artifact.file(variant.file), variant.min_length), tokenizer
    if variant.runtime == "onnxruntime":
        from mobclf.export.early_exit import EarlyExitOnnxRunner
        from mobclf.export.onnx import OnnxRunner

        if variant.arch == "early_exit_bert":  # one graph that stops by itself
            return EarlyExitOnnxRunner(artifact.file(variant.file), variant.min_length, exit_rule_of(artifact)["depth"],
                                       threads=threads), tokenizer
        return OnnxRunner(artifact.file(variant.file), variant.min_length, threads=threads), tokenizer
    raise UserError(f"unknown runtime {variant.runtime!r}")



def exit_rule_of(artifact: Artifact) -> dict:
    """An early-exit model's rule: a bundle's ``early_exit`` (bundle.json), or the one an INT8 artifact's model
    (mobclf quantize) gets in a bundle."""
    if artifact.kind == "export":
        return json.loads(artifact.file(artifact.manifest["bundle"]).read_text(encoding="utf-8"))["early_exit"]
    from mobclf.export.early_exit import exit_rule

    return exit_rule(build_model(artifact.manifest["architecture"]))


def choose_variant(artifact: Artifact, file: str | None = None) -> Variant:
    """The variant of ``artifact`` that answers: a bundle's ``file`` (its first file when None), else its one model."""
    variants = variants_of(artifact)
    if file is None:
        return variants[0]
    if artifact.kind != "export":
        raise UserError(f"is a {artifact.kind} artifact with one model; choosing a file (--file {file}) is for "
                        "export bundles: drop it", path=artifact.path)
    for variant in variants:
        if variant.file == file:
            return variant
    raise UserError(f"the bundle has no model file {file!r}; choose one of {', '.join(v.file for v in variants)}",
                    path=artifact.path)


@dataclass
class Predictor:
    """One model in its runtime, as an app uses it: texts → probabilities (``probs``) → chosen labels (``decide``,
    the model's own thresholds and decision rule: ``predict_labels``)."""

    variant: Variant
    labels: list[str]
    tokenizer: object
    forward: Callable  # (input_ids, attention_mask) → logits

    @property
    def single_label(self) -> bool:
        return self.variant.single_label

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.variant.thresholds)

    def probs(self, texts: list[str], batch_size: int = 128, description: str | None = None) -> np.ndarray:
        """Probabilities ``[N, labels]`` of ``texts``, in batches of ``batch_size``, with a rich progress bar when
        ``description`` is given. A text's answer never depends on the other texts (the runners see to it: an INT8
        ONNX file runs one text at a time, an ExecuTorch program one row at a time)."""
        return torch.sigmoid(self._rows(self.forward, texts, batch_size, description)).numpy()

    def _rows(self, forward: Callable, texts: list[str], batch_size: int, description: str | None) -> torch.Tensor:
        """``forward(input_ids, attention_mask)``'s rows for every text, in order ``[N, width]``."""
        if not texts:
            return torch.zeros((0, len(self.labels)))
        encoded = TokenizedTexts(self.tokenizer, texts)
        if description is not None:
            return predict_logits(forward, encoded, batch_size, description=description)
        with torch.no_grad():
            return torch.cat([forward(**encoded.batch(index)).float().cpu()
                              for index in batch_indices(len(encoded), batch_size)])

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Multi-hot ``[N, labels]`` choices: argmax for a single-label model; for a multi-label one every label at
        or above its threshold, the most probable one when none is."""
        return predict_labels(probs, self.thresholds, self.single_label)

    def answer(self, texts: list[str], batch_size: int = 128, description: str | None = None) -> Answers:
        """What the app shows for ``texts``: the probabilities and the labels chosen from them."""
        probs = self.probs(texts, batch_size, description)
        return Answers(probs, self.decide(probs))

    @property
    def description(self) -> str:
        return f"{self.variant.kind} {self.variant.name} ({self.variant.runtime} {self.variant.precision})"


@dataclass
class Answers:
    """A model's answers for N texts: probabilities and chosen labels ``[N, labels]``; for a cascade (``cascade.py``)
    also which texts the accurate model answered ``[N]`` (the probabilities and labels are that model's there); for
    an early-exit model (``models/early_exit.py``) the layer each text left at ``[N]``."""

    probs: np.ndarray
    choices: np.ndarray
    escalated: np.ndarray | None = None
    exit_layers: np.ndarray | None = None


@dataclass
class EarlyExitPredictor(Predictor):
    """An early-exit model, eager (``EarlyExitBert``), its ``.pte`` or its ``.onnx`` (``export/early_exit.py``): its
    answers also say at which layer each text left."""

    model: object = None  # its answer(input_ids, attention_mask) gives the logits and the exit layers

    def answer(self, texts: list[str], batch_size: int = 128, description: str | None = None) -> Answers:
        if not texts:
            probs = np.zeros((0, len(self.labels)), dtype=np.float32)
            return Answers(probs, self.decide(probs), exit_layers=np.zeros(0, dtype=int))

        def logits_and_exit(input_ids, attention_mask):  # the exit layer as one more column
            with torch.no_grad():
                logits, layers = self.model.answer(input_ids.to(self.variant.device),
                                                   attention_mask.to(self.variant.device))
            return torch.cat([logits.float(), layers[:, None].float().to(logits.device)], dim=1).cpu()

        rows = self._rows(logits_and_exit, texts, batch_size, description)
        probs = torch.sigmoid(rows[:, :-1]).numpy()
        return Answers(probs, self.decide(probs), exit_layers=rows[:, -1].numpy().astype(int))


def open_model(model: Path | Artifact, file: str | None = None, device: str = "auto",
               kinds: tuple[str, ...] = KINDS) -> Predictor:
    """Any model artifact (teacher, student, pruned, quantized) or export bundle (a directory, or an artifact loaded
    already) as a ``Predictor`` in its runtime: eager (on ``device``; auto: CUDA for a teacher when there is one),
    ExecuTorch or onnxruntime. ``file`` chooses a bundle's file (default its first). A cascade bundle opens as a
    ``CascadePredictor``, ``file`` choosing its runtime."""
    artifact = model if isinstance(model, Artifact) else load_artifact(Path(model), kind=kinds)
    if artifact.kind == "cascade":
        from mobclf.cascade import open_cascade

        return open_cascade(artifact, file)
    variant = choose_variant(artifact, file)
    if variant.runtime == "eager" and device != "auto":
        from mobclf.models import resolve_device

        variant.device = str(resolve_device(device))
    forward, tokenizer = open_predictor(variant, threads=None, artifact=artifact)
    if variant.arch == "early_exit_bert":
        return EarlyExitPredictor(variant, artifact.labels, tokenizer, forward,
                                  model=forward.model if variant.runtime == "eager" else forward)
    return Predictor(variant, artifact.labels, tokenizer, forward)
