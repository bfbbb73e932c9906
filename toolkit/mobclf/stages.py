"""Every stage of mobclf, declared as data: its config (each setting with default, help, choices and range), its
inputs and the function that runs it. ``mobclf.cli`` makes one command per stage from these declarations and
``mobclf.recipes`` one kind of recipe step, so the command line and recipes take exactly the same settings.

This module imports nothing heavy: the stage functions are named, not imported (see ``protocol.Stage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mobclf.protocol import Input, Stage, StageConfig, setting

RUNTIMES = ("executorch", "onnx")
SCHEMES = ("static", "dynamic")
EMBEDDINGS = ("int8", "fp32")
TARGETS = ("android", "onnx", "web", "all")
PARITY_TEXTS = 200  # validation texts a parity check runs, by default
PARITY_SEED = 0  # which ones, by default


@dataclass(frozen=True)
class Tolerance(StageConfig):
    """How close an exported file must stay to the fp32 model (export's parity check, which quantize runs too)."""

    min_agreement: float = setting(0.98, "Least share of texts whose thresholded labels must match the fp32 "
                                   "model's.", min=0, max=1)
    max_prob_diff: float = setting(0.2, "Largest |Δ probability| allowed between an exported file and the fp32 "
                                   "model.", min=0, max=1)


@dataclass(frozen=True)
class QuantizeConfig(StageConfig):
    """INT8 post-training quantization (``compress/quantize.py``)."""

    runtime: str = setting("executorch", "ExecuTorch (PT2E, XNNPACK) → model.pte; ONNX (onnxruntime.quantization) → "
                           "model.onnx.", choices=RUNTIMES)
    scheme: str = setting("static", "static: int8 activations calibrated on training texts; dynamic: activations "
                          "quantized per call (linear layers, for TinyBERT).", choices=SCHEMES)
    calibration_size: int = setting(256, "Training texts to calibrate on.", flag="calibration", min=1)
    embedding: str = setting("int8", "ExecuTorch: embedding tables as int8 with per-row scales, or fp32 as PT2E "
                             "leaves them.", choices=EMBEDDINGS)
    seed: int = setting(42, "Which training texts calibrate.")
    parity_texts: int = setting(PARITY_TEXTS, "Validation texts of export's parity check, run here first.", min=1)
    tolerance: Tolerance = field(default_factory=Tolerance)  # what export will accept
    accept_parity_failure: bool = setting(False, "Write the file even when export's parity check would refuse it "
                                          "(its certificate says so, and `mobclf bench` flags it).")


QUANTIZE = Stage(("quantize",), QuantizeConfig, "mobclf.compress.quantize:run", produces="quantized",
                 inputs=(Input("from", "Student or pruned artifact."),
                         Input("data", "Dataset artifact (calibration texts, val/test metrics).")),
                 help="INT8 post-training quantization, measured on val (and test) in the runtime the model will run "
                      "in; the file gets `mobclf export`'s parity check first (same texts, same tolerance).")


@dataclass(frozen=True)
class ExportConfig(StageConfig):
    """A device bundle with its parity certificate (``export/bundle.py``)."""

    target: str = setting("android", "android: model.pte (ExecuTorch, XNNPACK); onnx/web: model.onnx (onnxruntime); "
                          "all: both.", choices=TARGETS)
    parity_texts: int = setting(PARITY_TEXTS, "Validation texts run through the fp32 model and every exported file.",
                                min=1)
    tolerance: Tolerance = field(default_factory=Tolerance)
    accept_parity_failure: bool = setting(False, "Write the bundle even when an exported file fails the parity check "
                                          "(its certificate says so, and `mobclf bench` flags it).")
    ort: bool = setting(False, "Also write model.ort (ONNX Runtime Mobile format) beside model.onnx.")
    seed: int = setting(PARITY_SEED, "Which validation texts check parity.")


EXPORT = Stage(("export",), ExportConfig, "mobclf.export.bundle:run", produces="export",
               inputs=(Input("from", "Student, pruned or quantized artifact."),
                       Input("data", "Dataset artifact for the parity texts [default: the model's own].",
                             required=False)),
               help="Write a device bundle (model files, tokenizer, labels, thresholds, bundle.json) with a parity "
                    "certificate.")

STAGES = (QUANTIZE, EXPORT)
