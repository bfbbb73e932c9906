"""ExecuTorch: one straight line from a classifier to a ``.pte``, and a runner over the ExecuTorch runtime.

    torch.export (batch 1, dynamic sequence length) → [PT2E INT8: prepare → calibrate → convert]
        → to_edge_transform_and_lower(XnnpackPartitioner) → to_executorch → .pte bytes

The program takes ``input_ids`` and ``attention_mask`` (int64 [1, L]) and returns the logits [1, labels]; the app
applies the activation and thresholds. ``L`` may be anything from ``min_length`` to the model's max length: shorter
inputs are padded to ``min_length`` (see ``exportable.py``). Facts and pitfalls this follows are in TOOLCHAIN.md
(mkldnn narrowing dynamic ranges of Conv1d, 4D attention masks for PT2E, eager attention for BERT).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mobclf.export.exportable import ExportableClassifier, min_length, pad_to
from mobclf.quiet import native_stderr

BOOKKEEPING_NODES = ("getitem", "sym_size")  # graph plumbing, not operators that run


def export_program(module: nn.Module, shortest: int, max_length: int) -> torch.export.ExportedProgram:
    """torch.export of an ``ExportableClassifier`` (or the graph PT2E made of one) at batch 1 with a dynamic
    sequence length ``shortest..max_length``."""
    example = (torch.ones(1, shortest, dtype=torch.long), torch.ones(1, shortest, dtype=torch.long))
    seq = torch.export.Dim("seq", min=shortest, max=max_length)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        return torch.export.export(module, example, dynamic_shapes=({1: seq}, {1: seq}))


@dataclass
class Lowered:
    """A ``.pte`` and which operators XNNPACK took (``delegated``) and which run on portable kernels."""

    pte: bytes
    delegated: dict[str, int]
    not_delegated: dict[str, int]


def lower(program: torch.export.ExportedProgram) -> Lowered:
    """XNNPACK lowering and serialisation of an exported (possibly PT2E-quantized) program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.utils.configs import get_transform_passes
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    with torch.backends.mkldnn.flags(enabled=False):  # the transform passes drop expand_copy nodes that change no
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],  # shape (matmul's, in BERTs)
                                           transform_passes=get_transform_passes())
    operators = get_delegation_info(edge.exported_program().graph_module).delegation_by_operator
    operators = {name: row for name, row in operators.items() if name not in BOOKKEEPING_NODES}
    return Lowered(edge.to_executorch().buffer,
                   {name: row.delegated for name, row in operators.items() if row.delegated},
                   {name: row.non_delegated for name, row in operators.items() if row.non_delegated})


def to_pte(exportable: ExportableClassifier, max_length: int, quantizer=None,
           calibration: list[tuple[torch.Tensor, torch.Tensor]] = (), train=None) -> Lowered:
    """The straight line: export → [PT2E: prepare with ``quantizer``, run the ``calibration`` batches (batch 1),
    [``train(prepared)``: quantization-aware training, on a graph prepared for it], convert, export again] → XNNPACK
    lowering → ``.pte``."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    shortest = min_length(exportable.model)
    program = export_program(exportable, shortest, max_length)
    if quantizer is not None:
        prepared = (prepare_pt2e if train is None else prepare_qat_pt2e)(program.module(), quantizer)
        with torch.no_grad():
            for input_ids, attention_mask in calibration:
                prepared(*pad_to(input_ids, attention_mask, shortest))
        if train is not None:
            train(prepared)
        program = export_program(convert_pt2e(prepared), shortest, max_length)
    return lower(program)


class PteRunner:
    """Runs a ``.pte`` classifier in the ExecuTorch runtime, one text at a time (as the phone does)."""

    def __init__(self, pte: Path | bytes, min_length: int):
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(Path(pte) if isinstance(pte, (str, Path)) else pte)
        with native_stderr():  # the threadpool's first start prints CPU-probing lines meant for ARM boards
            self.method = program.load_method("forward")
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
