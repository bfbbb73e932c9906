"""``mobclf quantize``: INT8 post-training quantization of a student, measured in the runtime it will ship in.

- **ExecuTorch** (PT2E with the XNNPACK quantizer): ``static`` quantizes weights per channel (symmetric int8) and
  activations per tensor, calibrated on N real training texts; ``dynamic`` quantizes the weights and the activations
  of each call (linear layers: meant for TinyBERT). PT2E leaves embedding tables in fp32, and they are most of a
  student's size, so they become int8 with one fp32 scale per row (``Int8Embedding``), built from standard ops that
  the quantizer is told to skip.
- **ONNX** (``onnxruntime.quantization``): ``dynamic`` (``quantize_dynamic``: int8 weights of MatMul/Gemm and of the
  embedding Gather) or ``static`` QDQ calibrated on the same texts.

The artifact holds the quantized file (``model.pte`` or ``model.onnx``), the fp32 weights and tokenizer it came
from, the scheme and the calibration set (indices into the dataset's train split), and val (and test) metrics of the
quantized file run in its own runtime, with agreement with the fp32 model and with the teacher.

Before anything is written, the file gets the parity check ``mobclf export`` will give it (``export.parity``: the
same val texts, the same tolerance): a file export would refuse is refused here, in one line with what to try.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobclf.artifacts import Artifact, check_output_dir, lineage, load_artifact, write_artifact
from mobclf.console import console
from mobclf.data.dataset import Dataset, load_dataset
from mobclf.distill.teacher_cache import agreement_with_teacher
from mobclf.errors import UserError
from mobclf.export.executorch import PteRunner, to_pte
from mobclf.export.exportable import ExportableClassifier, min_length
from mobclf.export.onnx import OnnxRunner, export_onnx
from mobclf.export.parity import certify, enforce, parity_sample
from mobclf.stages import QuantizeConfig
from mobclf.models import load_classifier, save_weights
from mobclf.models.textcnn import TextCNN
from mobclf.text import load_tokenizer
from mobclf.train.classifier import predict_probs
from mobclf.train.metrics import agreement, classification_metrics
from mobclf.train.thresholds import predict_labels



class Int8Embedding(nn.Module):
    """An embedding table stored as int8 with one fp32 scale per row (symmetric: ``row ≈ q · scale``, |q| ≤ 127).

    Built from indexing and a multiply, which ExecuTorch runs as they are; the lookup then costs one int8 row and one
    scale instead of a fp32 row (4× smaller)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("quantized", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.quantized[input_ids].float() * self.scale[input_ids].unsqueeze(-1)


def int8_embeddings(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Embedding`` inside ``module`` by an ``Int8Embedding`` of the same table (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Embedding):
            setattr(module, name, Int8Embedding(child.weight))
        else:
            int8_embeddings(child)
    return module


def xnnpack_quantizer(scheme: str):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=scheme == "dynamic"))
    return quantizer.set_module_type(Int8Embedding, None)


def _quantize_executorch(model: nn.Module, max_length: int, config: QuantizeConfig, calibration: list,
                         directory: Path) -> tuple[Path, dict]:
    exportable = ExportableClassifier(model)
    if config.embedding == "int8":
        int8_embeddings(exportable)
    lowered = to_pte(exportable, max_length, xnnpack_quantizer(config.scheme),
                     calibration if config.scheme == "static" else calibration[:1])
    path = directory / "model.pte"
    path.write_bytes(lowered.pte)
    return path, {"delegated_ops": lowered.delegated, "portable_ops": lowered.not_delegated}


def _quantize_onnx(model: nn.Module, max_length: int, config: QuantizeConfig, calibration: list,
                   directory: Path) -> tuple[Path, dict]:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = directory / "model.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_onnx(model, max_length, Path(scratch) / "fp32.onnx")
        if config.scheme == "dynamic":
            graph = onnx.load(str(fp32))  # shape entries naming initializers break quantize_dynamic (TOOLCHAIN.md)
            initializers = {tensor.name for tensor in graph.graph.initializer}
            kept = [info for info in graph.graph.value_info if info.name not in initializers]
            del graph.graph.value_info[:]
            graph.graph.value_info.extend(kept)
            onnx.save(graph, str(fp32))
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8)
        else:
            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.batches = iter(calibration)

                def get_next(self):
                    batch = next(self.batches, None)
                    return None if batch is None else {"input_ids": batch[0].numpy(),
                                                       "attention_mask": batch[1].numpy()}

            prepared = Path(scratch) / "prepared.onnx"
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm", "Gather"])
    return path, {}


def _teacher_of(parent: Artifact) -> Artifact | None:
    """The teacher in the student's lineage, if it is still there, unchanged (else agreement with it is not
    measured)."""
    try:
        return parent.ancestor("teacher")
    except UserError as err:
        console.log(f"teacher not usable ({err.format_message()}): agreement with the teacher is not measured")
        return None


def _calibration_batches(dataset: Dataset, tokenizer, config: QuantizeConfig) -> tuple[list, list[int]]:
    texts = dataset.texts("train")
    rows = np.random.default_rng(config.seed).choice(len(texts), min(config.calibration_size, len(texts)),
                                                     replace=False)
    batches = []
    for row in sorted(rows.tolist()):
        encoded = tokenizer.encode_batch([texts[row]])
        batches.append((encoded["input_ids"], encoded["attention_mask"]))
    return batches, sorted(rows.tolist())


def run(config: QuantizeConfig, *, source: Path, data: Path, out: Path, force: bool = False) -> Artifact:
    """Quantize a ``student`` (or ``pruned``) artifact to INT8 for ``config.runtime`` and measure it there."""
    check_output_dir(out, force)
    parent = load_artifact(source, kind=("student", "pruned"))
    dataset = load_dataset(data)
    dataset.check_labels_of(parent)
    model = load_classifier(parent)
    if config.runtime == "executorch" and config.scheme == "dynamic" and isinstance(model, TextCNN):
        raise UserError("dynamic quantization covers linear layers and a TextCNN is convolutions; use --scheme "
                        "static for it")
    tokenizer = load_tokenizer(parent.file("tokenizer"))
    calibration, rows = _calibration_batches(dataset, tokenizer, config)
    quantize_to = _quantize_executorch if config.runtime == "executorch" else _quantize_onnx
    with write_artifact(out, kind="quantized", force=force) as artifact:
        console.log(f"quantizing for {config.runtime} ({config.scheme}, {len(calibration)} calibration texts)")
        path, lowering = quantize_to(model, tokenizer.max_length, config, calibration, artifact.dir)
        runner = PteRunner(path, min_length(model)) if config.runtime == "executorch" else \
            OnnxRunner(path, min_length(model))
        parity = _export_parity(runner, model, tokenizer, dataset, parent, config, path.name)
        metrics = _runtime_metrics(runner, model, tokenizer, dataset, parent)
        save_weights(model, artifact.dir)
        tokenizer.save(artifact.dir / "tokenizer")
        kept = ("architecture", "params", "tokenizer", "labels", "multi_label", "output_activation", "thresholds",
                "distillation")  # distillation: where later stages find the teacher
        artifact.manifest.update({key: parent.manifest[key] for key in kept if key in parent.manifest})
        artifact.manifest.update({
            "quantization": {**asdict(config), **lowering, "file": path.name, "size_bytes": path.stat().st_size,
                             "calibration": {"split": "train", "rows": rows, "dataset_sha256": dataset.artifact.sha256}},
            "metrics": metrics,
            "parity": {path.name: parity},
            "lineage": lineage([parent, dataset.artifact], config.seed),
        })
    size = artifact.manifest["quantization"]["size_bytes"]
    console.log(f"{path.name}: {size / 1e6:.2f} MB; val micro-F1 {metrics['val']['micro_f1']:.4f} "
                f"(fp32 {parent.manifest['metrics']['val']['micro_f1']:.4f}), agreement with fp32 "
                f"{metrics['agreement_with_fp32']['val']:.4f}")
    return load_artifact(out)


def _remedies(config: QuantizeConfig, model: nn.Module) -> str:
    """What else to try when the INT8 file disagrees with the fp32 model."""
    tries = [f"--calibration {config.calibration_size * 4}"] if config.scheme == "static" else []
    if config.runtime == "executorch" and config.embedding == "int8":
        tries.append("--embedding fp32")
    if not (config.runtime == "executorch" and isinstance(model, TextCNN)):
        tries.append(f"--scheme {'dynamic' if config.scheme == 'static' else 'static'}")
    return ", ".join(tries) or "a larger fp32 model"


def _export_parity(runner, model: nn.Module, tokenizer, dataset: Dataset, parent: Artifact, config: QuantizeConfig,
                   name: str) -> dict:
    """The parity certificate ``mobclf export`` will compute for this file (same texts, same tolerance); a failure
    stops here unless ``config.parity.accept_failure``."""
    texts = parity_sample(dataset.texts("val"), config.parity.texts)
    result = certify(predict_probs(model, tokenizer, texts, description="parity: fp32"), runner, tokenizer, texts,
                     np.asarray(parent.manifest["thresholds"]), not dataset.multi_label, config.parity.tolerance,
                     f"parity: {name}")
    enforce(name, result, config.parity, f"try {_remedies(config, model)}, or pass --accept-parity-failure here and "
            "to export", context=" as `mobclf export` checks it")
    return result


def _runtime_metrics(runner, model: nn.Module, tokenizer, dataset: Dataset, parent: Artifact) -> dict:
    """Per split: metrics of the quantized file with the fp32 model's thresholds, and agreement of its label sets
    with the fp32 model and the teacher."""
    thresholds, single_label = np.asarray(parent.manifest["thresholds"]), not dataset.multi_label
    metrics, predictions = {"agreement_with_fp32": {}, "max_abs_prob_difference": {}}, {}
    for split in ("val", "test"):
        texts = dataset.texts(split)
        if not texts:
            continue
        probs = predict_probs(runner, tokenizer, texts, description=f"{split} in the runtime")
        fp32_probs = predict_probs(model, tokenizer, texts, description=f"{split} fp32")
        predictions[split] = predict_labels(probs, thresholds, single_label)
        metrics[split] = classification_metrics(dataset.targets(split, np.uint8), predictions[split], dataset.labels)
        metrics["agreement_with_fp32"][split] = agreement(predictions[split], predict_labels(fp32_probs, thresholds,
                                                                                             single_label))
        metrics["max_abs_prob_difference"][split] = float(np.abs(probs - fp32_probs).max())
    teacher = _teacher_of(parent)
    metrics["agreement_with_teacher"] = {} if teacher is None else agreement_with_teacher(
        predictions, teacher, load_classifier(teacher), load_tokenizer(teacher.file("tokenizer")), dataset)
    return metrics

