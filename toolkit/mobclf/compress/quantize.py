"""``mobclf quantize``: INT8 post-training quantization of a student, measured in the runtime it will ship in.

- **ExecuTorch** (PT2E with the XNNPACK quantizer): ``static`` quantizes weights per channel (symmetric int8) and
  activations per tensor, calibrated on N real training texts; ``dynamic`` quantizes the weights and the activations
  of each call (linear layers: meant for TinyBERT). PT2E leaves embedding tables in fp32, and they are most of a
  student's size, so they become int8 with one fp32 scale per row (``Int8Embedding``), built from standard ops that
  the quantizer is told to skip.
- **ONNX** (``onnxruntime.quantization``): ``dynamic`` (``quantize_dynamic``: int8 weights of MatMul/Gemm and of the
  embedding Gather, in 7 bits so that x86 CPUs without VNNI do not saturate) or ``static`` QDQ calibrated on the
  same texts.
- An **early-exit** model (``export/early_exit.py``): for ExecuTorch each layer's method is quantized on what reaches
  it in the INT8 file (the texts, then the quantized states of the methods before it); for ONNX its one graph, whose
  layers sit in the branches of If nodes, is quantized dynamically, branches included (onnxruntime calibrates no
  branches).

The artifact holds the quantized file (``model.pte`` or ``model.onnx``), the fp32 weights and tokenizer it came
from, the scheme and the calibration set (indices into the dataset's train split), and val (and test) metrics of the
quantized file run in its own runtime, with agreement with the fp32 model and with the teacher.

Before anything is written, the file gets the parity check ``mobclf export`` will give it (``export.parity``: the
same val texts, the same tolerance). When it fails, the next way is tried (``escalation``: accuracy-driven tuning as in
Intel Neural Compressor, the cheapest change first): four times the calibration texts, the output layer kept in
fp32, dynamic quantization (linear models), quantization-aware training (PT2E QAT: fake-quantized forward passes
trained to give the fp32 model's outputs, Jacob et al. 2018), fp32 embeddings. The first file that passes is kept
and every attempt is recorded with its agreement; when none passes, one line says what each gave.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mobclf.artifacts import Artifact, check_output_dir, lineage, load_artifact, write_artifact
from mobclf.console import console
from mobclf.data.dataset import Dataset, load_dataset
from mobclf.distill.losses import soft_target_kd
from mobclf.distill.teacher_cache import agreement_with_teacher
from mobclf.errors import UserError
from mobclf.export.executorch import PteRunner, XnnpackLayerNorm, program_rows, to_pte
from mobclf.export.exportable import ExportableClassifier, min_length
from mobclf.export.early_exit import (ExportableEarlyExit, early_exit_certificate, early_exit_runner,
                                      to_early_exit_onnx, to_early_exit_pte)
from mobclf.export.onnx import OnnxRunner, export_onnx
from mobclf.export.parity import certify, enforce, parity_sample
from mobclf.stages import FitConfig, QuantizeConfig
from mobclf.models import load_classifier, save_weights
from mobclf.models.dpcnn import DPCNN, HalvingPool
from mobclf.models.early_exit import EarlyExitBert
from mobclf.models.fasttext import NgramBuckets
from mobclf.models.rnn import AdditiveAttention, RecurrentStudent
from mobclf.models.textcnn import MaskedMaxPool, TextCNN
from mobclf.text import load_tokenizer
from mobclf.train.batching import TokenizedTexts, predict_logits
from mobclf.train.classifier import predict_probs
from mobclf.train.loop import fit
from mobclf.train.metrics import agreement, classification_metrics
from mobclf.train.thresholds import predict_labels

# -1e4 on padding would take the int8 range; hashed token ids are no activations
KEPT_IN_FP32 = (MaskedMaxPool, HalvingPool, AdditiveAttention, NgramBuckets)


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 with one fp32 scale per row (symmetric: ``row ≈ q · scale``, |q| ≤ 127).

    Built from two embedding lookups (an int8 row, a one-column fp32 row) and a multiply, which ExecuTorch runs as
    they are: a lookup costs one int8 row and one scale instead of a fp32 row (4× smaller). ``F.embedding`` rather
    than indexing: ExecuTorch's portable ``index`` kernel (general advanced indexing) took 45% of a TNEWS TextCNN's
    call, its ``embedding`` kernel (a row copy) is about 5× faster on the same lookups."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        self.register_buffer("quantized", torch.round(weight / scale).to(torch.int8))
        self.register_buffer("scale", scale)  # [rows, 1]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.quantized).float() * F.embedding(input_ids, self.scale)


def int8_embeddings(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Embedding`` inside ``module`` by an ``Int8Embedding`` of the same table (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Embedding):
            setattr(module, name, Int8Embedding(child.weight))
        else:
            int8_embeddings(child)
    return module


@dataclass(frozen=True)
class Attempt:
    """One way to make the INT8 file: the scheme, its calibration texts, the embeddings' precision, the layers kept
    in fp32 (module names in the model) and epochs of quantization-aware training."""

    scheme: str
    calibration_size: int
    embedding: str
    fp32_layers: tuple[str, ...] = ()
    qat_epochs: int = 0

    def describe(self) -> str:
        parts = [self.scheme + (f", {self.calibration_size} calibration texts" if self.scheme == "static" else ""),
                 f"{self.embedding} embeddings"]
        if self.fp32_layers:
            parts.append(f"{' and '.join(self.fp32_layers)} in fp32")
        if self.qat_epochs:
            parts.append(f"{self.qat_epochs} epochs of QAT")
        return ", ".join(parts)


def convolutional(model: nn.Module) -> bool:
    """A TextCNN or DPCNN: its weights are mostly convolutions, which XNNPACK does not quantize dynamically."""
    return isinstance(model, (TextCNN, DPCNN))


def first_scheme(config: QuantizeConfig, model: nn.Module) -> str:
    """``config.scheme``, except for a recurrent student in a ``.pte``: dynamic, its linears in int8 and the
    recurrence's elementwise steps in fp32 (PyTorch's dynamic quantization of LSTMs). Static INT8 would round every
    step's state and leaves XNNPACK an unrolled loop of quantized slices it cannot take as one part."""
    if config.runtime == "executorch" and config.scheme == "static" and isinstance(model, RecurrentStudent):
        console.log("a recurrent student: dynamic INT8 (int8 linears, fp32 recurrence)")
        return "dynamic"
    if config.runtime == "onnx" and config.scheme == "static" and isinstance(model, EarlyExitBert):
        console.log("an early-exit graph: dynamic INT8 (its layers sit in If branches, which static calibration "
                    "does not reach)")
        return "dynamic"
    return config.scheme


def output_layer(model: nn.Module) -> str:
    """The name of the last layer whose weights are quantized (convolution or linear): the classifier."""
    return [name for name, module in model.named_modules() if isinstance(module, (nn.Conv1d, nn.Linear))][-1]


def escalation(config: QuantizeConfig, model: nn.Module, train_texts: int) -> list[Callable[[Attempt], Attempt]]:
    """The changes ``mobclf quantize`` tries, in order, each to the attempt that agreed best so far (so a change that
    did not help is not carried on): the cheap ones first, then the ones that cost training time or file size."""
    changes = []
    if config.scheme == "static" and config.calibration_size < train_texts:
        changes.append(lambda attempt: replace(attempt, calibration_size=attempt.calibration_size * 4))
    if config.runtime == "onnx":
        if isinstance(model, EarlyExitBert):  # dynamic only, with nothing to calibrate
            return []
        return [*changes, lambda attempt: replace(attempt, scheme="dynamic" if config.scheme == "static" else
                                                  "static")]
    if not isinstance(model, EarlyExitBert):  # which has an output layer per exit
        changes.append(lambda attempt: replace(attempt, fp32_layers=(output_layer(model),)))
    if config.scheme == "static" and not convolutional(model):  # XNNPACK quantizes no conv dynamically
        changes.append(lambda attempt: replace(attempt, scheme="dynamic"))
    if config.qat_epochs and not isinstance(model, (RecurrentStudent, EarlyExitBert)):  # QAT trains one graph
        changes.append(lambda attempt: replace(attempt, scheme="static", qat_epochs=config.qat_epochs))
    if config.embedding == "int8":
        changes.append(lambda attempt: replace(attempt, embedding="fp32"))
    return changes


def xnnpack_quantizer(attempt: Attempt):
    """PT2E's XNNPACK quantizer for ``attempt``: weights per channel (symmetric int8), activations per tensor. For
    QAT, activations are fake-quantized with the ranges static calibration gives them (a histogram observer), to be
    frozen before training (``quantization_aware_training``), instead of PT2E's moving average of each batch's range,
    which is narrower than the range the calibrated file needs and clips the texts with the largest activations."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import FakeQuantize, HistogramObserver
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=attempt.scheme == "dynamic",
                                               is_qat=attempt.qat_epochs > 0)
    if attempt.qat_epochs:
        activations = replace(config.input_activation, observer_or_fake_quant_ctr=FakeQuantize.with_args(
            observer=HistogramObserver, eps=2 ** -12))
        config = replace(config, input_activation=activations, output_activation=activations)
    quantizer = XNNPACKQuantizer().set_global(config)
    if attempt.fp32_layers:  # the quantizer takes no "leave this name alone", only a filter of what it quantizes
        in_fp32 = [get_module_name_filter(f"model.{name}") for name in attempt.fp32_layers]  # in ExportableClassifier
        quantizer.set_filter_function(lambda node: not any(layer(node) for layer in in_fp32))
    for kept_in_fp32 in (Int8Embedding, XnnpackLayerNorm, *KEPT_IN_FP32):
        quantizer.set_module_type(kept_in_fp32, None)
    return quantizer


def quantization_aware_training(model: nn.Module, tokenizer, texts: list[str], multi_label: bool,
                                config: QuantizeConfig, epochs: int):
    """``train(prepared)`` for ``to_pte``: trains the fake-quantized graph (batch 1, as exported) to give the fp32
    ``model``'s outputs on ``texts`` (soft-target KD at T = 1, Hinton et al. 2015), so the INT8 file learns to agree
    with the model it replaces rather than with the gold labels."""
    encoded = TokenizedTexts(tokenizer, texts)
    targets = predict_logits(model, encoded, description="QAT targets: fp32")
    shortest = min_length(model)
    fit_config = FitConfig(epochs=epochs, batch_size=32, lr=config.qat_lr, patience=epochs, seed=config.seed)

    def train(prepared: torch.fx.GraphModule) -> None:
        from torchao.quantization.pt2e import FakeQuantizeBase

        for module in prepared.modules():  # freeze the calibrated activation ranges; weight ranges follow training
            if isinstance(module, FakeQuantizeBase) and module.qscheme == torch.per_tensor_affine:
                module.disable_observer()

        def batch_loss(index: torch.Tensor) -> torch.Tensor:
            batch = encoded.batch(index)
            logits = torch.cat([prepared(ids, mask) for ids, mask in
                                program_rows(batch["input_ids"], batch["attention_mask"], shortest)])
            return soft_target_kd(logits, targets[index], multi_label=multi_label)

        fit(_InferenceBehaviour(prepared), len(texts), batch_loss, None, fit_config, "quantization-aware training",
            lengths=encoded.lengths)

    return train


class _InferenceBehaviour(nn.Module):
    """A graph exported in inference mode, for ``fit``: its weights train while it keeps computing as at inference
    (no dropout), since its targets are the fp32 model's inference outputs; ``train()`` changes nothing."""

    def __init__(self, graph: torch.fx.GraphModule):
        super().__init__()
        self.graph = graph

    def train(self, mode: bool = True) -> "_InferenceBehaviour":
        return self


def _quantize_executorch(model: nn.Module, max_length: int, attempt: Attempt, calibration: list, directory: Path,
                         train=None) -> tuple[Path, dict]:
    early_exit = isinstance(model, EarlyExitBert)
    exportable = ExportableEarlyExit(model) if early_exit else ExportableClassifier(model)
    if attempt.embedding == "int8":
        int8_embeddings(exportable)
    quantizer, calibration = xnnpack_quantizer(attempt), calibration if attempt.scheme == "static" else calibration[:1]
    lowered = to_early_exit_pte(exportable, max_length, quantizer, calibration) if early_exit else \
        to_pte(exportable, max_length, quantizer, calibration, train)
    path = directory / "model.pte"
    path.write_bytes(lowered.pte)
    return path, {"delegated_ops": lowered.delegated, "portable_ops": lowered.not_delegated}


def _quantize_onnx(model: nn.Module, max_length: int, attempt: Attempt, calibration: list,
                   directory: Path) -> tuple[Path, dict]:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
        quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = directory / "model.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = (to_early_exit_onnx if isinstance(model, EarlyExitBert) else export_onnx)(
            model, max_length, Path(scratch) / "fp32.onnx")
        if attempt.scheme == "dynamic":
            graph = onnx.load(str(fp32))  # shape entries naming initializers break quantize_dynamic (TOOLCHAIN.md)
            initializers = {tensor.name for tensor in graph.graph.initializer}
            kept = [info for info in graph.graph.value_info if info.name not in initializers]
            del graph.graph.value_info[:]
            graph.graph.value_info.extend(kept)
            onnx.save(graph, str(fp32))
            # 7-bit weights: x86 CPUs without VNNI sum u8×s8 pairs in int16, which 8-bit weights overflow; with 7
            # the integer sums are exact on every CPU (onnxruntime's documented remedy)
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, reduce_range=True,
                             extra_options={"EnableSubgraph": True})  # an early-exit graph's If branches too
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


def _calibration_rows(dataset: Dataset, size: int, seed: int) -> list[int]:
    """Which training texts calibrate: ``size`` of them drawn with ``seed``, in order."""
    count = len(dataset.texts("train"))
    return sorted(np.random.default_rng(seed).choice(count, min(size, count), replace=False).tolist())


def _encoded_rows(dataset: Dataset, tokenizer, rows: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    texts = dataset.texts("train")
    encoded = [tokenizer.encode_batch([texts[row]]) for row in rows]
    return [(batch["input_ids"], batch["attention_mask"]) for batch in encoded]


def run(config: QuantizeConfig, *, source: Path, data: Path, out: Path, force: bool = False) -> Artifact:
    """Quantize a ``student`` (or ``pruned``) artifact to INT8 for ``config.runtime`` and measure it there: the
    first attempt (``escalation``) whose file passes the parity check is kept."""
    check_output_dir(out, force)
    parent = load_artifact(source, kind=("student", "pruned"))
    dataset = load_dataset(data)
    dataset.check_labels_of(parent)
    model = load_classifier(parent)
    if config.runtime == "executorch" and config.scheme == "dynamic" and convolutional(model):
        raise UserError(f"dynamic quantization covers linear layers and a {parent.manifest['architecture']['name']} "
                        "is mostly convolutions; use --scheme static for it")
    tokenizer = load_tokenizer(parent.file("tokenizer"))
    with write_artifact(out, kind="quantized", force=force) as artifact:
        chosen, path, lowering, parity, tried = _first_that_agrees(model, tokenizer, dataset, parent, config,
                                                                   artifact.dir)
        runner = _runner(config.runtime, path, model)
        metrics = _runtime_metrics(runner, model, tokenizer, dataset, parent)
        save_weights(model, artifact.dir)
        tokenizer.save(artifact.dir / "tokenizer")
        kept = ("architecture", "params", "tokenizer", "labels", "multi_label", "output_activation", "thresholds",
                "distillation")  # distillation: where later stages find the teacher
        artifact.manifest.update({key: parent.manifest[key] for key in kept if key in parent.manifest})
        rows = _calibration_rows(dataset, chosen.calibration_size, config.seed)
        artifact.manifest.update({
            "quantization": {**asdict(config), **asdict(chosen), **lowering, "file": path.name,
                             "size_bytes": path.stat().st_size, "attempts": tried,
                             "calibration": {"split": "train", "rows": rows,
                                             "dataset_sha256": dataset.artifact.sha256}},
            "metrics": metrics,
            "parity": {path.name: parity},
            "lineage": lineage([parent, dataset.artifact], config.seed),
        })
    size = artifact.manifest["quantization"]["size_bytes"]
    console.log(f"{path.name} ({chosen.describe()}): {size / 1e6:.2f} MB; val micro-F1 "
                f"{metrics['val']['micro_f1']:.4f} (fp32 {parent.manifest['metrics']['val']['micro_f1']:.4f}), "
                f"agreement with fp32 {metrics['agreement_with_fp32']['val']:.4f}")
    return load_artifact(out)


def _runner(runtime: str, path: Path, model: nn.Module):
    """The quantized file of ``model`` in the runtime it was made for."""
    if isinstance(model, EarlyExitBert):
        return early_exit_runner(model, path, runtime)
    return PteRunner(path, min_length(model)) if runtime == "executorch" else OnnxRunner(path, min_length(model))


def _first_that_agrees(model: nn.Module, tokenizer, dataset: Dataset, parent: Artifact, config: QuantizeConfig,
                       directory: Path) -> tuple[Attempt, Path, dict, dict, list[dict]]:
    """Make the file of the configured attempt, then of each change of ``escalation``, and give each the parity
    check ``mobclf export`` will give it (same val texts, same tolerance) until one passes: ``(attempt, file in
    directory, lowering, its certificate, every attempt's record)``. When none passes, the one that agreed best is
    kept with ``config.parity.accept_failure``; otherwise nothing is written and one line says what each gave."""
    texts = parity_sample(dataset.texts("val"), config.parity.texts)
    check = partial(early_exit_certificate, model) if isinstance(model, EarlyExitBert) else \
        partial(certify, predict_probs(model, tokenizer, texts, description="parity: fp32"))
    thresholds = np.asarray(parent.manifest["thresholds"])
    first = Attempt(first_scheme(config, model), config.calibration_size, config.embedding)
    changes = escalation(config, model, len(dataset.texts("train"))) if config.escalate else []
    tried, best = [], None
    for number, change in enumerate([None, *changes], 1):
        attempt = first if change is None else change(best[0])
        if any(record["attempt"] == attempt.describe() for record in tried):
            continue  # that change was made already
        console.log(f"quantizing for {config.runtime}, attempt {number}/{len(changes) + 1}: {attempt.describe()}")
        started = time.perf_counter()
        calibration = _encoded_rows(dataset, tokenizer, _calibration_rows(dataset, attempt.calibration_size,
                                                                          config.seed))
        with tempfile.TemporaryDirectory() as scratch:
            if config.runtime == "onnx":
                path, lowering = _quantize_onnx(model, tokenizer.max_length, attempt, calibration, Path(scratch))
            else:
                train = quantization_aware_training(model, tokenizer, dataset.texts("train"), dataset.multi_label,
                                                    config, attempt.qat_epochs) if attempt.qat_epochs else None
                path, lowering = _quantize_executorch(model, tokenizer.max_length, attempt, calibration,
                                                      Path(scratch), train)
            runner = _runner(config.runtime, path, model)
            result = check(runner, tokenizer, texts, thresholds, not dataset.multi_label, config.parity.tolerance,
                           f"parity: attempt {number}")
            tried.append({"attempt": attempt.describe(), **asdict(attempt), **result,
                          "size_bytes": path.stat().st_size, "seconds": round(time.perf_counter() - started, 1)})
            console.log(f"attempt {number}: label-set agreement {result['label_set_agreement']:.4f}, max |Δprob| "
                        f"{result['max_abs_prob_difference']:.3g}: {'passed' if result['passed'] else 'failed'}")
            if best is None or (result["passed"], result["label_set_agreement"]) > (
                    best[3]["passed"], best[3]["label_set_agreement"]):  # a file that passes beats one that agrees more
                best = (attempt, directory / path.name, lowering, result)
                path.replace(best[1])
        if result["passed"]:
            break
    attempt, path, lowering, result = best
    if not result["passed"]:
        what = "; ".join(f"{record['attempt']}: {record['label_set_agreement']:.4f}" for record in tried)
        advice = (f"tried {what}; try more --qat-epochs" if config.escalate else
                  "let mobclf quantize try other ways (without --no-escalate)")
        enforce(path.name, result, config.parity, f"{advice}, or pass --accept-parity-failure here and to export",
                context=" as `mobclf export` checks it, at best")
    return attempt, path, lowering, result, tried


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

