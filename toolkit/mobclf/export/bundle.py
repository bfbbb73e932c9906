"""``mobclf export``: a device bundle a phone app (or a web page) needs and nothing else, with a parity certificate.

    <out>/model.pte          --target android (ExecuTorch, XNNPACK)      ┐ the files of a quantized artifact as
    <out>/model.onnx         --target onnx / web (onnxruntime)           ┘ they are; fp32 files from the weights
    <out>/model.ort          with --ort: the .onnx in ONNX Runtime Mobile's format
    <out>/tokenizer/         tokenizer.json (type and rules) + vocab.txt (+ jieba_dict.txt / hf_tokenizer.json)
    <out>/labels.txt         one label per line, in output order
    <out>/bundle.json        schema version, inputs (ids, lengths), output activation and decision rule, labels,
                             per-label thresholds, teacher and student metrics, the parity certificate, and the
                             sha256 of every other file
    <out>/manifest.json      the artifact contract (kind "export", lineage, checksums)

Before anything is written, ``parity.certify`` runs real validation texts through the eager model and through
every exported file in its runtime; export stops with an error when a file disagrees beyond the tolerance, unless
``parity.accept_failure`` (the certificate then records the failure, and ``mobclf bench`` flags the bundle).
``force`` only replaces an earlier bundle at ``out``; it never lets a failing file through.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobclf.artifacts import Artifact, check_output_dir, lineage, load_artifact, sha256_file, write_artifact
from mobclf.console import console
from mobclf.data.dataset import Dataset, load_dataset
from mobclf.errors import UserError
from mobclf.export.early_exit import (ExportableEarlyExit, early_exit_certificate, early_exit_runner, every_exit_rows,
                                      exit_rule, to_early_exit_onnx, to_early_exit_pte)
from mobclf.export.executorch import PteRunner, to_pte
from mobclf.export.exportable import ExportableClassifier, min_length
from mobclf.export.onnx import OnnxRunner, export_onnx, to_ort
from mobclf.export.parity import Tolerance, certify, compare, enforce, parity_sample
from mobclf.stages import ExportConfig
from mobclf.models import load_classifier
from mobclf.models.early_exit import EarlyExitBert
from mobclf.text import load_tokenizer
from mobclf.train.batching import TokenizedTexts, predict_logits
from mobclf.train.classifier import predict_probs

BUNDLE_SCHEMA_VERSION = 1
TARGETS = {"android": ("executorch",), "onnx": ("onnx",), "web": ("onnx",), "all": ("executorch", "onnx")}
FILES = {"executorch": "model.pte", "onnx": "model.onnx"}
RUNNERS = {"executorch": PteRunner, "onnx": OnnxRunner}


def _dataset_of(artifact: Artifact, data: Path | None):
    """``data`` if given, else the dataset artifact in the model's lineage (checked to be the one it came from)."""
    if data is not None:
        return load_dataset(data)
    parent = artifact.ancestor("dataset")
    if parent is None:
        raise UserError("the model's lineage names no dataset; give --data DIR for the parity texts",
                        path=artifact.path)
    return Dataset(parent)


def _check_runtimes(artifact: Artifact, target: str) -> None:
    """A quantized artifact ships only the INT8 file it was made for: a target needing the other runtime would
    silently ship an fp32 file under an INT8 artifact's name, so it is refused with the ways out."""
    quantization = artifact.manifest.get("quantization")
    other = [runtime for runtime in TARGETS[target] if quantization and runtime != quantization["runtime"]]
    if other:
        matching = "android" if quantization["runtime"] == "executorch" else "onnx or web"
        fp32 = next((parent["path"] for parent in artifact.manifest["lineage"]["parents"]
                     if parent["kind"] in ("student", "pruned")), "its fp32 model")
        raise UserError(f"is INT8 for {quantization['runtime']} only, so its {FILES[other[0]]} would be fp32; export "
                        f"it with --target {matching}, quantize for {other[0]} too (mobclf quantize --runtime "
                        f"{other[0]}), or export the fp32 model itself (--from {fp32})", path=artifact.path)


def _model_file(artifact: Artifact, model: nn.Module, runtime: str, max_length: int, directory: Path) -> dict:
    """Write the ``runtime`` file into ``directory``: copied from a quantized artifact (made for that runtime:
    ``_check_runtimes``), otherwise exported in fp32 from the weights. Returns its description for bundle.json."""
    path = directory / FILES[runtime]
    quantization = artifact.manifest.get("quantization")
    if quantization:
        shutil.copyfile(artifact.file(quantization["file"]), path)
        described = {"precision": "int8", "scheme": quantization["scheme"]}
        if runtime == "executorch":
            described |= {"delegated_ops": quantization["delegated_ops"], "portable_ops": quantization["portable_ops"]}
    elif runtime == "executorch":
        lowered = (to_early_exit_pte(ExportableEarlyExit(model), max_length) if isinstance(model, EarlyExitBert)
                   else to_pte(ExportableClassifier(model), max_length))
        path.write_bytes(lowered.pte)
        described = {"precision": "fp32", "delegated_ops": lowered.delegated, "portable_ops": lowered.not_delegated}
    else:
        (to_early_exit_onnx if isinstance(model, EarlyExitBert) else export_onnx)(model, max_length, path)
        described = {"precision": "fp32"}
    return {"file": path.name, "runtime": runtime, **described}


def run(config: ExportConfig, *, source: Path, out: Path, data: Path | None = None, force: bool = False) -> Artifact:
    """Export a student, pruned or quantized artifact as a device bundle for ``config.target``; ``config.ort`` adds
    ``model.ort`` (ONNX Runtime Mobile) beside ``model.onnx``. ``force`` replaces an earlier bundle at ``out``;
    ``config.parity.accept_failure`` writes the bundle even when a file fails the parity check."""
    target, tolerance, ort = config.target, config.parity.tolerance, config.ort
    if ort and "onnx" not in TARGETS[target]:
        raise UserError(f"--ort converts the .onnx file; use it with --target onnx, web or all (not {target})")
    check_output_dir(out, force)
    artifact = load_artifact(source, kind=("student", "pruned", "quantized"))
    _check_runtimes(artifact, target)
    dataset = _dataset_of(artifact, data)
    dataset.check_labels_of(artifact)
    model, tokenizer = load_classifier(artifact), load_tokenizer(artifact.file("tokenizer"))
    texts = parity_sample(dataset.texts("val"), config.parity.texts, config.seed)
    thresholds, single_label = np.asarray(artifact.manifest["thresholds"]), not dataset.multi_label
    early_exit = isinstance(model, EarlyExitBert)  # its certificate computes the eager answers itself
    eager_probs = None if early_exit else predict_probs(model, tokenizer, texts, description="parity: eager")

    with write_artifact(out, kind="export", force=force) as bundle:
        files, parity = {}, {}
        for runtime in TARGETS[target]:
            described = _model_file(artifact, model, runtime, tokenizer.max_length, bundle.dir)
            files[runtime] = described
            if runtime == "onnx" and ort:
                to_ort(bundle.dir / described["file"], bundle.dir / "model.ort")
                files["onnx-ort"] = {**described, "file": "model.ort", "format": "ort (ONNX Runtime Mobile)"}
        for described in files.values():
            if early_exit:
                parity.update(_early_exit_parity(model, bundle.dir / described["file"], described["runtime"],
                                                 tokenizer, texts, thresholds, single_label, tolerance))
                continue
            runner = RUNNERS[described["runtime"]](bundle.dir / described["file"], min_length(model))
            parity[described["file"]] = certify(eager_probs, runner, tokenizer, texts, thresholds, single_label,
                                                tolerance, f"parity: {described['file']}")
        for name, result in parity.items():
            enforce(name, result, config.parity, "pass --accept-parity-failure to export it anyway, marked as failed",
                    path=out)
        tokenizer.save(bundle.dir / "tokenizer")
        (bundle.dir / "labels.txt").write_text("".join(f"{label}\n" for label in artifact.labels), encoding="utf-8")
        description = _bundle_description(artifact, model, tokenizer, target, files, parity, tolerance)
        description["files"] = {path.relative_to(bundle.dir).as_posix(): sha256_file(path)
                                for path in sorted(bundle.dir.rglob("*")) if path.is_file()}
        (bundle.dir / "bundle.json").write_text(json.dumps(description, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
        bundle.manifest.update({"target": target, "bundle": "bundle.json", "labels": artifact.labels,
                                "parity": parity, "lineage": lineage([artifact, dataset.artifact], config.seed)})
    for name, result in parity.items():
        console.log(f"{name}: label-set agreement {result['label_set_agreement']:.4f}, max |Δprob| "
                    f"{result['max_abs_prob_difference']:.2e} on {result['texts']} val texts")
    return load_artifact(out)


def _early_exit_parity(model: EarlyExitBert, path: Path, runtime: str, tokenizer, texts: list[str],
                       thresholds: np.ndarray, single_label: bool, tolerance: Tolerance) -> dict:
    """The certificate of an early-exit file, as the app runs it (texts leaving early:
    ``early_exit_certificate``); for a ``.pte`` also each exit on its own (every method run; the ``.onnx`` graph
    only answers from the exit it stops at)."""
    runner = early_exit_runner(model, path, runtime)
    certificates = {path.name: early_exit_certificate(model, runner, tokenizer, texts, thresholds, single_label,
                                                      tolerance, f"parity: {path.name}")}
    if runtime != "executorch":
        return certificates

    def runtime_exits(input_ids, attention_mask):
        return runner.all_exits(input_ids, attention_mask).transpose(0, 1).flatten(1)

    encoded = TokenizedTexts(tokenizer, texts)
    eager = predict_logits(every_exit_rows(model), encoded, description="parity: eager, every exit")
    ours = predict_logits(runtime_exits, encoded, description=f"parity: {path.name}, every exit")
    eager, ours = (torch.sigmoid(logits).reshape(len(texts), model.depth, -1).numpy() for logits in (eager, ours))
    for number, name in enumerate(exit_rule(model)["methods"]):
        certificates[f"{path.name}#{name}"] = compare(ours[:, number], eager[:, number], thresholds, single_label,
                                                      tolerance)
    return certificates


def _bundle_description(artifact: Artifact, model: nn.Module, tokenizer, target: str, files: dict, parity: dict,
                        tolerance: Tolerance) -> dict:
    manifest = artifact.manifest
    teacher = manifest.get("distillation", {}).get("teacher", {})
    return {
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "target": target,
        "model": {"architecture": manifest["architecture"]["name"], "source_kind": artifact.kind,
                  "params": manifest["params"], "files": files},
        "inputs": {"names": ["input_ids", "attention_mask"], "dtype": "int64", "shape": "[1, L] for .pte, [B, L] "
                   "for .onnx", "min_length": min_length(model), "max_length": tokenizer.max_length,
                   "pad_id": tokenizer.pad_id, "padding": "pad shorter inputs with pad_id and mask 0 up to "
                   "min_length; padding does not change the output"},
        "output": {"name": "logits", "activation": manifest["output_activation"],
                   "decision": "argmax" if not manifest["multi_label"]
                   else "probability >= threshold per label; the most probable label when none passes"},
        "tokenizer": {"directory": "tokenizer", **tokenizer.spec,
                      "ids": {"pad": tokenizer.pad_id, "unk": tokenizer.unk_id, "cls": tokenizer.cls_id,
                              "sep": tokenizer.sep_id, "mask": tokenizer.mask_id}},
        "labels": artifact.labels,
        "labels_file": "labels.txt",
        "thresholds": manifest["thresholds"],
        "metrics": {"model": {split: {key: scores[key] for key in ("micro_f1", "macro_f1")}
                              for split, scores in manifest["metrics"].items() if split in ("val", "test")},
                    "teacher_micro_f1": teacher.get("micro_f1")},
        "parity": {"tolerance": {"min_label_set_agreement": tolerance.min_agreement,
                                 "max_abs_prob_difference": tolerance.max_prob_diff}, "files": parity},
        **({"early_exit": exit_rule(model)} if isinstance(model, EarlyExitBert) else {}),
    }
