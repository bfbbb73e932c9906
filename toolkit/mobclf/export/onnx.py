"""ONNX: ``torch.onnx.export`` (dynamo) with dynamic batch and sequence axes, checked with ``onnx.checker``, and a
runner over onnxruntime. Inputs ``input_ids`` / ``attention_mask`` (int64 [B, L]), output ``logits`` [B, labels]."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

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
    return write_onnx(exportable, example, ({0: batch, 1: seq}, {0: batch, 1: seq}), ["logits"], path)


def write_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], dynamic_shapes: tuple[dict, ...],
               outputs: list[str], path: Path) -> Path:
    """torch.onnx.export (dynamo) of ``module`` taking ``input_ids`` and ``attention_mask``, one self-contained file
    without the exporter's debugging metadata, checked with ``onnx.checker``."""
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        torch.onnx.export(module, example, str(path), input_names=list(INPUTS), output_names=outputs,
                          dynamic_shapes=dynamic_shapes, dynamo=True, external_data=False, verbose=False)
    _drop_exporter_metadata(path)
    onnx.checker.check_model(str(path))
    return Path(path)


def _drop_exporter_metadata(path: Path) -> None:
    """Remove what torch.onnx records per node and value for debugging (the Python stack that made it, with this
    machine's file paths; FX node names), in the graph and the graphs of its If nodes: the same model then gives the
    same file wherever it is exported."""
    model = onnx.load(str(path))
    for graph in _graphs(model.graph):
        for item in [*graph.node, *graph.value_info, *graph.input, *graph.output, *graph.initializer]:
            del item.metadata_props[:]
    onnx.save(model, str(path))


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every graph nested in its nodes' attributes (the branches of If nodes)."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for nested in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                yield from _graphs(nested)


def graph_ops(path: Path) -> set[str]:
    """The operator types of an ``.onnx`` file, nested graphs included."""
    return {node.op_type for graph in _graphs(onnx.load(str(path), load_external_data=False).graph)
            for node in graph.node}


QUANTIZED_OPS = {"DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul",
                 "QLinearConv"}


class OnnxRunner:
    """Runs an ``.onnx`` (or ``.ort``) classifier in onnxruntime (CPU): ``runner(input_ids, attention_mask)``.

    An INT8 graph quantizes activations with scales computed over its whole input, padding included, so a text's
    answer would depend on the batch it came in; such a graph, a graph with If nodes (an early-exit model's: its
    conditions are one text's) and an ``.ort`` file (whose graph cannot be read here) run one text at a time,
    unpadded, as an app runs them. An fp32 graph runs whole padded batches."""

    def __init__(self, path: Path, min_length: int, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.min_length = min_length
        self.one_at_a_time = Path(path).suffix == ".ort" or bool(graph_ops(path) & {*QUANTIZED_OPS, "If"})

    def outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                names: tuple[str, ...] = ("logits",)) -> list[torch.Tensor]:
        """The graph's outputs ``names`` for a padded batch, each ``[B, ...]``."""
        if self.one_at_a_time and len(input_ids) > 1:
            lengths = attention_mask.sum(dim=1).clamp(min=1).tolist()
            rows = [self.outputs(input_ids[row:row + 1, :length], attention_mask[row:row + 1, :length], names)
                    for row, length in enumerate(lengths)]
            return [torch.cat(column) for column in zip(*rows)]
        ids, mask = pad_to(input_ids, attention_mask, self.min_length)
        feeds = {"input_ids": ids.numpy().astype(np.int64), "attention_mask": mask.numpy().astype(np.int64)}
        return [torch.from_numpy(output) for output in self.session.run(list(names), feeds)]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.outputs(input_ids, attention_mask)[0]


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
