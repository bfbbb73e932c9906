"""The one place that silences the toolchain's noise: messages that torch, torchao, onnxruntime and ExecuTorch print
on every run and that say nothing the user of mobclf can act on.

Each entry names one message (matched from its start) and why it is not the user's business. Nothing else is
filtered: mobclf's own warnings and every other library warning still show. ``mobclf/__init__.py`` calls
``install()`` before anything imports torch, so the filters are in place whichever stage runs.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterator

# (warning category, message regex): Python warnings raised inside the pinned libraries.
WARNINGS = [
    # torch's pytree deprecation, raised from its own code whenever torch.export copies a spec (×7 per export).
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # torch.backends.mkldnn.flags() always sets oneDNN's TF32 switch, which only matters on Intel GPUs.
    (UserWarning, r"TF32 acceleration on top of oneDNN is available for Intel GPUs"),
    # torch.onnx naming the dynamic axes: batch and seq are shared by input_ids and attention_mask on purpose.
    (UserWarning, r"# The axis name: \w+ will not be used, since it shares the same shape constraints"),
    # ExecuTorch's Python runtime announces itself as experimental on import (a DeprecationWarning subclass).
    (DeprecationWarning, r"This API is experimental and subject to change without notice"),
    # ExecuTorch's Inspector without intermediate outputs: mobclf reads its operator timings only (native profile).
    (UserWarning, r"Output Buffer not found\. Tensor Debug Data will not be available"),
    # peft asking transformers 5.23 a renamed question when it wraps a model for LoRA (the LLM teacher).
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
]

# logger name -> message regexes: records the libraries log while they load or export.
LOGS = {
    # torch.onnx skipping torchvision's detection ops (nms, roi_align, ...) as torchvision is absent; mobclf needs none.
    "torch.onnx._internal.exporter._registration": [r"torchvision is not installed"],
    # torchao's CUDA-only kernels (mxfp8, cutlass) that a CPU machine cannot load and mobclf never uses.
    "torchao": [r"Failed to load .*_C_"],
    # torchao's Triton (GPU) int-matmul kernels, absent on CPU (shows once anything adds a handler to the root logger).
    "torchao.kernel.intmm": [r"Warning: Detected no triton"],
    # torchao registers its Enums as pytree constants; torch deprecates that (torchao's business, not the user's).
    "torch.utils._pytree": [r".* is an Enum subclass and is now natively supported by torch.compile"],
    # onnxruntime's hint to run its shape pre-processing; mobclf decides per scheme whether to (TOOLCHAIN.md).
    "root": [r"Please consider (to run )?pre-processing before quantization"],
    # onnx_ir keeping the exit number each branch of an early-exit graph returns (a constant output, as intended).
    "onnx_ir.passes.common.initializer_deduplication": [r"Skipped deduplication of initializer '\w+' as it is a "
                                                         r"graph input or output"],
}

# Lines native code writes straight to file descriptor 2: ExecuTorch's threadpool reading CPU files that only ARM
# boards have, whenever it starts (a .pte method's first load, or bench resetting its thread count), and announcing
# the thread count bench asked for.
NATIVE = [r"\[cpuinfo_utils\.cpp:\d+\]", r"\[threadpool\.cpp:\d+\] Resetting threadpool to \d+ threads"]


class _Drop(logging.Filter):
    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = [re.compile(pattern) for pattern in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format is not ours to hide
            return True
        return not any(pattern.match(message) for pattern in self.patterns)


_installed = False


def install() -> None:
    """Put the filters in place (once per process; calling again does nothing)."""
    global _installed
    if _installed:
        return
    _installed = True
    filter_warnings()
    for name, patterns in LOGS.items():
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        logger.addFilter(_Drop(patterns))


def filter_warnings() -> None:
    """Add the ``WARNINGS`` filters (each one message of one category) in front of the current ones."""
    for category, message in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


@contextmanager
def native_stderr(patterns: list[str] = NATIVE) -> Iterator[None]:
    """Hold back what native code writes to file descriptor 2 inside the block, then write it out without the lines
    matching ``patterns``. Python's own ``sys.stderr`` is flushed first so the order of lines is kept."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 (a closed or replaced stderr): nothing to filter
        yield
        return
    compiled = [re.compile(pattern.encode()) for pattern in patterns]
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = b"".join(line for line in held if not any(pattern.search(line) for pattern in compiled))
            while kept:
                kept = kept[os.write(2, kept):]
