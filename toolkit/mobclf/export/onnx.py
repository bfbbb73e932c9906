"""ONNX: ``torch.onnx.export`` (dynamo) with dynamic batch and sequence axes, checked with ``onnx.checker``, and a
runner over onnxruntime. Inputs ``input_ids`` / ``attention_mask`` (int64 [B, L]), output ``logits`` [B, labels]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from mobclf.export.exportable import ExportableClassifier, min_length, pad_to, sequence_dim

INPUTS = ("input_ids", "attention_mask")


def export_onnx(model: nn.Module, max_length: int, path: Path) -> Path:
    """Write ``model`` as ONNX to ``path`` (batch and sequence length dynamic up to ``max_length``)."""
    shortest = min_length(model)
    example = (torch.ones(2, shortest, dtype=torch.long), torch.ones(2, shortest, dtype=torch.long))
    batch, seq = torch.export.Dim("batch", min=1), sequence_dim(shortest, max_length)
    exportable = ExportableClassifier(model).eval()  # the wrapper too: torch.onnx warns about training mode
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        torch.onnx.export(exportable, example, str(path), input_names=list(INPUTS), output_names=["logits"],
                          dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}), dynamo=True, external_data=False,
                          verbose=False)
    _drop_exporter_metadata(path)
    onnx.checker.check_model(str(path))
    return Path(path)


def _drop_exporter_metadata(path: Path) -> None:
    """Remove what torch.onnx records per node and value for debugging (the Python stack that made it, with this
    machine's file paths; FX node names): the same model then gives the same file wherever it is exported."""
    model = onnx.load(str(path))
    graph = model.graph
    for item in [*graph.node, *graph.value_info, *graph.input, *graph.output, *graph.initializer]:
        del item.metadata_props[:]
    onnx.save(model, str(path))


QUANTIZED_OPS = {"DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul",
                 "QLinearConv"}


class OnnxRunner:
    """Runs an ``.onnx`` (or ``.ort``) classifier in onnxruntime (CPU): ``runner(input_ids, attention_mask)``.

    An INT8 graph quantizes activations with scales computed over its whole input, padding included, so a text's
    answer would depend on the batch it came in; such a graph (and an ``.ort`` file, whose graph cannot be read
    here) runs one text at a time, unpadded, as an app runs it. An fp32 graph runs whole padded batches."""

    def __init__(self, path: Path, min_length: int, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.min_length = min_length
        self.one_at_a_time = Path(path).suffix == ".ort" or any(
            node.op_type in QUANTIZED_OPS for node in onnx.load(str(path), load_external_data=False).graph.node)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.one_at_a_time and len(input_ids) > 1:
            lengths = attention_mask.sum(dim=1).clamp(min=1).tolist()
            return torch.cat([self(input_ids[row:row + 1, :length], attention_mask[row:row + 1, :length])
                              for row, length in enumerate(lengths)])
        ids, mask = pad_to(input_ids, attention_mask, self.min_length)
        feeds = {"input_ids": ids.numpy().astype(np.int64), "attention_mask": mask.numpy().astype(np.int64)}
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])


def to_ort(onnx_path: Path, ort_path: Path) -> Path:
    """Convert to the ORT format ONNX Runtime Mobile loads (graph optimisations applied offline, basic level so the
    file stays portable across CPUs)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(ort_path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return Path(ort_path)
