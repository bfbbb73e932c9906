"""What ``mobclf bench`` compares: every model an artifact offers, in the runtime it runs in.

- a teacher: fp32 eager (on CUDA when there is one, as a server would run it; otherwise CPU);
- a student or pruned model: fp32 eager on CPU;
- a quantized artifact: its ``model.pte`` in the ExecuTorch runtime or ``model.onnx`` in onnxruntime;
- an export bundle: each of its files in its runtime.

A ``Variant`` is plain data (it crosses into the measuring subprocess); ``open_predictor`` turns it into a callable
``(input_ids, attention_mask) → logits`` and its tokenizer there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mobclf.artifacts import Artifact, load_artifact
from mobclf.errors import UserError
from mobclf.export.exportable import min_length
from mobclf.models import WEIGHTS, build_model, load_classifier
from mobclf.text import load_tokenizer

KINDS = ("teacher", "student", "pruned", "quantized", "export")


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


def variants_of(artifact: Artifact) -> list[Variant]:
    """The variants one artifact (loaded with ``kind=KINDS``) offers, named after its directory (plus the file for
    bundles)."""
    manifest, name = artifact.manifest, artifact.path.name
    if artifact.kind in ("teacher", "student", "pruned"):
        device = "cuda" if artifact.kind == "teacher" and torch.cuda.is_available() else "cpu"
        return [_variant(artifact, name, artifact.kind, manifest["architecture"]["name"], "eager", "fp32", WEIGHTS,
                         manifest["params"], manifest["thresholds"], device)]
    if artifact.kind == "quantized":
        quantization = manifest["quantization"]
        return [_variant(artifact, name, "quantized", manifest["architecture"]["name"],
                         _runtime(quantization["runtime"]), "int8", quantization["file"], manifest["params"],
                         manifest["thresholds"], shortest=min_length(build_model(manifest["architecture"])))]
    bundle = json.loads(artifact.file(manifest["bundle"]).read_text(encoding="utf-8"))
    return [_variant(artifact, f"{name}/{described['file']}", "quantized" if described["precision"] == "int8" else
                     bundle["model"]["source_kind"], bundle["model"]["architecture"], _runtime(described["runtime"]),
                     described["precision"], described["file"], bundle["model"]["params"], bundle["thresholds"],
                     shortest=bundle["inputs"]["min_length"],
                     parity_passed=bool(manifest["parity"].get(described["file"], {}).get("passed")))
            for described in bundle["model"]["files"].values()]


def _runtime(name: str) -> str:
    return "onnxruntime" if name == "onnx" else name


def _variant(artifact: Artifact, name: str, kind: str, arch: str, runtime: str, precision: str, file: str,
             params: int, thresholds: list[float], device: str = "cpu", shortest: int = 1,
             parity_passed: bool | None = None) -> Variant:
    return Variant(name, kind, arch, runtime, precision, str(artifact.path), file, params,
                   artifact.file(file).stat().st_size, thresholds, device, shortest, parity_passed)


def open_predictor(variant: Variant, threads: int):
    """``(predictor, tokenizer)`` for ``variant``, with ``threads`` CPU threads; call before loading any other
    ExecuTorch program in this process (its thread pool can only be sized first)."""
    artifact = load_artifact(Path(variant.artifact))
    tokenizer = load_tokenizer(artifact.file("tokenizer"))
    torch.set_num_threads(threads)
    if variant.runtime == "eager":
        model = load_classifier(artifact).to(variant.device)

        def predict(input_ids, attention_mask):
            with torch.no_grad():
                logits = model(input_ids.to(variant.device), attention_mask.to(variant.device)).float().cpu()
            return logits
        return predict, tokenizer
    if variant.runtime == "executorch":
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        from mobclf.export.executorch import PteRunner

        _unsafe_reset_threadpool(threads)
        return PteRunner(artifact.file(variant.file), variant.min_length), tokenizer
    if variant.runtime == "onnxruntime":
        from mobclf.export.onnx import OnnxRunner

        return OnnxRunner(artifact.file(variant.file), variant.min_length, threads=threads), tokenizer
    raise UserError(f"unknown runtime {variant.runtime!r}")
