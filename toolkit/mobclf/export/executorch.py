"""ExecuTorch: one straight line from a classifier to a ``.pte``, and a runner over the ExecuTorch runtime.

    LayerNorm as XNNPACK-delegable operators → torch.export (batch 1, dynamic sequence length)
        → [PT2E INT8: prepare → calibrate → convert]
        → to_edge_transform_and_lower(XnnpackPartitioner) → to_executorch → .pte bytes

The program takes ``input_ids`` and ``attention_mask`` (int64 [1, L]) and returns the logits [1, labels]; the app
applies the activation and thresholds. ``L`` may be anything from ``min_length`` to the model's max length: shorter
inputs are padded to ``min_length`` (see ``exportable.py``). Facts and pitfalls this follows are in TOOLCHAIN.md
(mkldnn narrowing dynamic ranges of Conv1d, 4D attention masks for PT2E, eager attention for BERT).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mobclf.errors import UserError
from mobclf.export.exportable import ExportableClassifier, min_length, pad_to, sequence_dim
from mobclf.quiet import native_stderr

BOOKKEEPING_NODES = ("getitem", "sym_size")  # graph plumbing, not operators that run


def export_program(module: nn.Module, shortest: int, max_length: int,
                   example: tuple[torch.Tensor, ...] | None = None) -> torch.export.ExportedProgram:
    """torch.export of an ``ExportableClassifier`` (or the graph PT2E made of one) at batch 1 with a dynamic
    sequence length ``shortest..max_length`` (static when they are equal). ``example``: other inputs ``[1, L, ...]``
    than ``input_ids`` and ``attention_mask`` (an early-exit layer's states and the mask), each dynamic in dim 1."""
    example = example or (torch.ones(1, shortest, dtype=torch.long), torch.ones(1, shortest, dtype=torch.long))
    seq = sequence_dim(shortest, max_length)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        return torch.export.export(module, example, dynamic_shapes=tuple({1: seq} for _ in example))


@dataclass
class Lowered:
    """A ``.pte`` and which operators XNNPACK took (``delegated``) and which run on portable kernels."""

    pte: bytes
    delegated: dict[str, int]
    not_delegated: dict[str, int]


class XnnpackLayerNorm(nn.Module):
    """Layer normalization (Ba et al., 2016, "Layer Normalization") in operators XNNPACK delegates: it has no
    LayerNorm, and the portable kernel between every two delegated parts cost a TinyBERT-4 a quarter of its call.
    Mean and variance over the last dim are linear layers whose weights are 1/H; the same values as ``norm`` up to
    float rounding."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        hidden = norm.normalized_shape[-1]
        self.register_buffer("average", torch.full((1, hidden), 1.0 / hidden))
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        centred = states - nn.functional.linear(states, self.average)
        variance = nn.functional.linear(centred * centred, self.average)
        return centred * torch.rsqrt(variance + self.eps) * self.weight + self.bias


def with_xnnpack_layer_norms(module: nn.Module) -> nn.Module:
    """``module`` with each last-dim ``nn.LayerNorm`` replaced (in place) by an ``XnnpackLayerNorm``."""
    for name, child in module.named_children():
        if isinstance(child, nn.LayerNorm) and len(child.normalized_shape) == 1:
            setattr(module, name, XnnpackLayerNorm(child))
        else:
            with_xnnpack_layer_norms(child)
    return module


def infer_the_dynamic_dim_of_views(graph_module: torch.fx.GraphModule):
    """Reshapes to ``[1, L, heads, head_size]`` and back (BERT attention) name the sequence length by a symbolic
    size, and XNNPACK takes no symbolic reshape: each stayed a portable ``view_copy`` between two delegated parts.
    With the one dynamic dim written as -1 and the others as the numbers they are, XNNPACK takes them."""
    from executorch.exir.dialects._ops import ops
    from torch.fx.passes.infra.pass_base import PassResult

    changed = False
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target == ops.edge.aten.view_copy.default:
            shape = node.meta["val"].shape
            dynamic = [dim for dim, size in enumerate(shape) if not isinstance(size, int)]
            if len(dynamic) == 1 and not all(isinstance(size, int) for size in node.args[1]):
                node.args = (node.args[0], [-1 if dim in dynamic else size for dim, size in enumerate(shape)])
                changed = True
    if changed:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return PassResult(graph_module, changed)


def check_lengths_kept(exported: torch.export.ExportedProgram, lowered: torch.export.ExportedProgram) -> None:
    """Refuse a program whose input lengths lowering narrowed: its inputs are planned for the narrower range, and a
    longer text would fail on the phone ("Attempted to resize a bounded tensor"). A guard that a tracing pass adds
    does that silently (torch 2.13's mkldnn convolution backend choice did, for 128-channel Conv1d over 157 tokens)."""
    longest = {str(symbol): bounds.upper for symbol, bounds in exported.range_constraints.items()}
    for symbol, bounds in lowered.range_constraints.items():
        if str(symbol) in longest and bounds.upper < longest[str(symbol)]:
            raise UserError(f"ExecuTorch lowering narrowed the input length from {longest[str(symbol)]} to "
                            f"{bounds.upper} tokens, so longer texts would fail in the .pte: a mobclf bug with this "
                            f"toolchain, please report it; a student of max length {bounds.upper} or less exports")


def lower(programs: dict[str, torch.export.ExportedProgram]) -> Lowered:
    """XNNPACK lowering and serialisation of exported (possibly PT2E-quantized) programs, one method of the ``.pte``
    each (a classifier has one, ``forward``)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.utils.configs import get_transform_passes
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    # XNNPACK's own transform passes drop the expand_copy nodes that change no shape (matmul's, in BERTs); ours
    # writes the dynamic dim of BERT's reshapes as -1
    passes = get_transform_passes([infer_the_dynamic_dim_of_views])
    with torch.backends.mkldnn.flags(enabled=False):  # to_executorch traces the convolutions again, too
        edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()], transform_passes=passes)
        executorch_program = edge.to_executorch()
    delegated, not_delegated = Counter(), Counter()
    for method, program in programs.items():
        check_lengths_kept(program, executorch_program.exported_program(method))
        operators = get_delegation_info(edge.exported_program(method).graph_module).delegation_by_operator
        for name, row in operators.items():
            if name not in BOOKKEEPING_NODES:
                delegated[name] += row.delegated
                not_delegated[name] += row.non_delegated
    return Lowered(executorch_program.buffer, {name: count for name, count in delegated.items() if count},
                   {name: count for name, count in not_delegated.items() if count})


def to_pte(exportable: ExportableClassifier, max_length: int, quantizer=None,
           calibration: list[tuple[torch.Tensor, torch.Tensor]] = (), train=None) -> Lowered:
    """The straight line: ``exportable``'s LayerNorms swapped (in place) → export → [PT2E: prepare with
    ``quantizer``, run the ``calibration`` batches (batch 1), [``train(prepared)``: quantization-aware training, on a
    graph prepared for it], convert, export again] → XNNPACK lowering → ``.pte``."""
    shortest = min_length(exportable.model)
    program = export_program(with_xnnpack_layer_norms(exportable), shortest, max_length)
    if quantizer is not None:
        quantized = pt2e_quantize(program, quantizer, [pad_to(*batch, shortest) for batch in calibration], train)
        program = export_program(quantized, shortest, max_length)
    return lower({"forward": program})


def pt2e_quantize(program: torch.export.ExportedProgram, quantizer, calibration: list[tuple[torch.Tensor, ...]],
                  train=None) -> torch.fx.GraphModule:
    """PT2E: ``program`` prepared with ``quantizer``, run on each input tuple of ``calibration`` (batch 1), [trained
    by ``train(prepared)``: quantization-aware training, on a graph prepared for it], converted. The graph returned
    computes as the INT8 file will (quantize / dequantize pairs in fp32) and is exported again to be lowered."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    prepared = (prepare_pt2e if train is None else prepare_qat_pt2e)(program.module(), quantizer)
    with torch.no_grad():
        for inputs in calibration:
            prepared(*inputs)
    if train is not None:
        train(prepared)
    return convert_pt2e(prepared)


class PteRunner:
    """Runs a ``.pte`` classifier in the ExecuTorch runtime, one text at a time (as the phone does)."""

    def __init__(self, pte: Path | bytes, min_length: int):
        from executorch.runtime import Runtime

        # kept: a program loaded from bytes holds them, and its methods read them (freed, a call crashes)
        self.program = Runtime.get().load_program(Path(pte) if isinstance(pte, (str, Path)) else pte)
        with native_stderr():  # the threadpool's first start prints CPU-probing lines meant for ARM boards
            self.method = self.program.load_method("forward")
        self.min_length = min_length

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits [B, labels] of a padded batch, computed row by row with each row cut to its real tokens."""
        return torch.cat([self.method.execute([ids, mask])[0]
                          for ids, mask in program_rows(input_ids, attention_mask, self.min_length)])


def program_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 min_length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each row of a padded batch as a ``.pte`` program takes it (here and in the native runner): [1, L], cut to its
    real tokens and padded to the program's ``min_length``."""
    rows = []
    for ids, mask in zip(input_ids, attention_mask):
        length = max(int(mask.sum()), 1)
        ids, mask = pad_to(ids[None, :length], mask[None, :length], min_length)
        rows.append((ids.contiguous(), mask.contiguous()))
    return rows
