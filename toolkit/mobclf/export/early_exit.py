"""An early-exit model (``models/early_exit.py``) on a device, where a text that leaves must run no further layers.

``.pte`` (ExecuTorch): one program with a method per layer, which the app chains:

    exit_1(input_ids, attention_mask) → (states [1, L, H], logits [1, labels])
    exit_k(states, attention_mask)    → (states, logits)                        k = 2 .. depth - 1
    exit_D(states, attention_mask)    → logits                                  the student's own head

One static graph cannot stop at a layer that depends on the text, so the program is cut where a text may leave: the
app runs ``exit_1``, and when the confidence of its logits (the cascade's rule: ``cascade.confidence``) reaches the
threshold it answers with them; otherwise it passes the states on to ``exit_2``, and so on. No layer runs twice.
bundle.json's ``early_exit`` names the methods, the threshold and the confidence kind. INT8 (``mobclf quantize``):
each method is quantized with PT2E on what reaches it in the INT8 file (``to_early_exit_pte``).

``.onnx``: one graph that decides by itself, ``(input_ids, attention_mask) → (logits, exit_layer)`` for one text:
after each layer an If node (``torch.cond`` when exported) answers with that exit's logits when its confidence
reaches the threshold, and otherwise runs the rest, so the app calls it as it calls any classifier.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobclf.export.executorch import (Lowered, export_program, lower, program_rows, pt2e_quantize,
                                     with_xnnpack_layer_norms)
from mobclf.export.exportable import min_length, pad_to, sequence_dim
from mobclf.export.onnx import OnnxRunner, write_onnx
from mobclf.export.parity import compare
from mobclf.models.bert import additive_mask
from mobclf.models.early_exit import EarlyExitBert, confidence_kind, exit_confidence
from mobclf.quiet import native_stderr
from mobclf.stages import Tolerance
from mobclf.train.batching import TokenizedTexts, predict_logits


def method_names(model: EarlyExitBert) -> list[str]:
    return [f"exit_{number}" for number in range(1, model.depth + 1)]


def exit_rule(model: EarlyExitBert) -> dict:
    """bundle.json's ``early_exit``: what the app needs to chain the ``.pte``'s methods, or to read the ``.onnx``."""
    return {"depth": model.depth, "methods": method_names(model), "threshold": model.config["threshold"],
            "confidence": confidence_kind(model.config["single_label"]),
            "leave_when": "confidence >= threshold",
            "states": "each method but the last returns the layer's states [1, L, hidden] (float32) and its exit's "
                      "logits; the next method takes those states and the same attention_mask",
            "onnx": "one graph with the rule inside: input_ids and attention_mask [1, L] → logits [1, labels] and "
                    "exit_layer [1] (int64, 1-based)"}


class ExitSegment(nn.Module):
    """Layer ``number`` (1-based) of an early-exit model and its exit: one method of the ``.pte``."""

    def __init__(self, model: EarlyExitBert, number: int):
        super().__init__()
        self.model, self.number = model, number

    def forward(self, inputs: torch.Tensor, attention_mask: torch.Tensor):
        model = self.model
        states = model.base.bert.embeddings(input_ids=inputs) if self.number == 1 else inputs
        states = model.base.bert.encoder.layer[self.number - 1](states, additive_mask(attention_mask, states.dtype))
        logits = model.exit_head(self.number, states, attention_mask)
        return logits if self.number == model.depth else (states, logits)


class ExportableEarlyExit(nn.Module):
    """An early-exit model in the form torch.export and PT2E take (as ``ExportableClassifier`` makes a classifier):
    a copy with LayerNorms XNNPACK delegates and eager attention, exported method by method (``ExitSegment``)."""

    def __init__(self, model: EarlyExitBert):
        super().__init__()
        self.model = with_xnnpack_layer_norms(copy.deepcopy(model).eval())
        self.model.base.bert.set_attn_implementation("eager")


def to_early_exit_pte(exportable: ExportableEarlyExit, max_length: int, quantizer=None,
                      calibration: list[tuple[torch.Tensor, torch.Tensor]] = ()) -> Lowered:
    """Every layer with its exit, exported as its own method (XNNPACK) of one ``.pte``; fp32, or INT8 with PT2E and
    ``quantizer``: each method calibrated on what reaches it in the INT8 file, the ``calibration`` texts (batch 1)
    for ``exit_1``, the states the methods before it, quantized, give for the others."""
    model = exportable.model
    shortest, hidden = min_length(model), model.base.bert.config.hidden_size
    inputs = [pad_to(input_ids, attention_mask, shortest) for input_ids, attention_mask in calibration]
    programs = {}
    for number, name in enumerate(method_names(model), start=1):
        example = None if number == 1 else (torch.zeros(1, shortest, hidden),
                                            torch.ones(1, shortest, dtype=torch.long))
        program = export_program(ExitSegment(model, number), shortest, max_length, example)
        if quantizer is not None:
            quantized = pt2e_quantize(program, quantizer, inputs)
            if number < model.depth:
                with torch.no_grad():
                    inputs = [(quantized(*segment_inputs)[0], segment_inputs[1]) for segment_inputs in inputs]
            program = export_program(quantized, shortest, max_length, example)
        programs[name] = program
    return lower(programs)


class EarlyExitGraph(nn.Module):
    """The whole rule in one graph for ONNX, one text at a time: layer ``number``, its exit, and a ``torch.cond``
    whose true branch answers with that exit's logits and whose false branch is the graph from the next layer on.
    The confidence is ``exit_confidence``'s, in float64 as in Python, so both decide alike."""

    def __init__(self, model: EarlyExitBert):
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self.model.base.bert.set_attn_implementation("eager")

    def _from_layer(self, number: int, states: torch.Tensor, attention_mask: torch.Tensor):
        model = self.model
        states = model.base.bert.encoder.layer[number - 1](states, additive_mask(attention_mask, states.dtype))
        logits = model.exit_head(number, states, attention_mask)
        if number == model.depth:
            return logits, torch.full((1,), number, dtype=torch.long)
        sure = exit_confidence(logits, model.label_thresholds, model.config["single_label"])[0] >= \
            model.config["threshold"]
        return torch.cond(sure, lambda states, mask, logits: (logits.clone(), torch.full((1,), number)),
                          lambda states, mask, logits: self._from_layer(number + 1, states, mask),
                          (states, attention_mask, logits))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self._from_layer(1, self.model.base.bert.embeddings(input_ids=input_ids), attention_mask)


def to_early_exit_onnx(model: EarlyExitBert, max_length: int, path: Path) -> Path:
    """Write the early-exit graph (fp32) to ``path``: batch 1, sequence length ``min_length``..``max_length``."""
    shortest = min_length(model)
    example = (torch.ones(1, shortest, dtype=torch.long), torch.ones(1, shortest, dtype=torch.long))
    seq = sequence_dim(shortest, max_length)
    return write_onnx(EarlyExitGraph(model).eval(), example, ({1: seq}, {1: seq}), ["logits", "exit_layer"], path)


class EarlyExitOnnxRunner(OnnxRunner):
    """The early-exit graph in onnxruntime, one text at a time (its conditions are one text's)."""

    def __init__(self, path: Path, min_length: int, depth: int, threads: int | None = None):
        super().__init__(path, min_length, threads)
        self.depth = depth

    def answer(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, labels]`` of a padded batch and the layer each row left at ``[B]``."""
        logits, exit_layers = self.outputs(input_ids, attention_mask, ("logits", "exit_layer"))
        return logits, exit_layers


def early_exit_runner(model: EarlyExitBert, path: Path, runtime: str):
    """``model``'s file at ``path`` in its ``runtime`` ("executorch" or "onnx"), run as the app runs it."""
    if runtime == "executorch":
        return EarlyExitPteRunner(path, min_length(model), exit_rule(model), model.config["thresholds"],
                                  model.config["single_label"])
    return EarlyExitOnnxRunner(path, min_length(model), model.depth)


def every_exit_rows(model: EarlyExitBert):
    """``(input_ids, attention_mask) → [B, depth × labels]``: every exit's logits of the eager model, one row per
    text (as ``predict_logits`` wants)."""
    def rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.exit_logits(*model.features(input_ids, attention_mask)).transpose(0, 1).flatten(1)
    return rows


def early_exit_certificate(model: EarlyExitBert, runner, tokenizer, texts: list[str], thresholds: np.ndarray,
                           single_label: bool, tolerance: Tolerance, description: str) -> dict:
    """The parity certificate of an early-exit file (its ``runner`` has ``answer``): label agreement with the eager
    model's answers, and the largest |Δprob| against the eager model's exit that the file answered from. A text that
    leaves one exit earlier or later (an INT8 confidence just across the threshold) answers from another classifier,
    which is not a numerical difference; how many do is ``exit_layer_agreement``."""
    encoded = TokenizedTexts(tokenizer, texts)

    def with_layers(answer):
        def rows(input_ids, attention_mask):  # the logits and the exit layer as one more column
            logits, layers = answer(input_ids, attention_mask)
            return torch.cat([logits.float(), layers[:, None].float()], dim=1)
        return rows

    with torch.no_grad():
        ours = predict_logits(with_layers(runner.answer), encoded, description=description)
        eager = predict_logits(with_layers(model.answer), encoded, description="parity: eager")
    exits = predict_logits(every_exit_rows(model), encoded, description="parity: eager, every exit")
    layers = ours[:, -1].long()
    same_exit = exits.reshape(len(texts), model.depth, -1)[torch.arange(len(texts)), layers - 1]
    probs = torch.sigmoid(ours[:, :-1]).numpy()
    answers = compare(probs, torch.sigmoid(eager[:, :-1]).numpy(), thresholds, single_label, tolerance)
    numbers = compare(probs, torch.sigmoid(same_exit).numpy(), thresholds, single_label, tolerance)
    result = {**answers, "max_abs_prob_difference": numbers["max_abs_prob_difference"],
              "max_abs_prob_difference_from_answers": answers["max_abs_prob_difference"],
              "exit_layer_agreement": float((layers == eager[:, -1].long()).float().mean())}
    result["passed"] = (result["label_set_agreement"] >= tolerance.min_agreement
                        and result["max_abs_prob_difference"] <= tolerance.max_prob_diff)
    return result


class EarlyExitPteRunner:
    """Runs an early-exit ``.pte`` as the app does, one text at a time: method after method until an exit is sure
    enough (``answer``), or every method (``all_exits``, for parity per exit)."""

    def __init__(self, pte: Path, min_length: int, rule: dict, thresholds: list[float], single_label: bool):
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(Path(pte))  # kept: its methods read it
        with native_stderr():
            self.methods = [self.program.load_method(name) for name in rule["methods"]]
        self.min_length, self.rule = min_length, rule
        self.thresholds, self.single_label = torch.tensor(thresholds), single_label

    @property
    def depth(self) -> int:
        return len(self.methods)

    def _exits(self, ids: torch.Tensor, mask: torch.Tensor, leave: bool) -> list[torch.Tensor]:
        """One text's exit logits in order, up to the first sure enough one when ``leave``."""
        logits, inputs = [], ids
        for number, method in enumerate(self.methods, start=1):
            outputs = method.execute([inputs, mask])
            if number == len(self.methods):
                return [*logits, outputs[0]]
            inputs = outputs[0]
            logits.append(outputs[1])
            if leave and exit_confidence(outputs[1], self.thresholds, self.single_label)[0] >= self.rule["threshold"]:
                return logits

    def answer(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, labels]`` of a padded batch, row by row, and the layer each row left at ``[B]``."""
        answered = [self._exits(ids, mask, leave=True)
                    for ids, mask in program_rows(input_ids, attention_mask, self.min_length)]
        return torch.cat([exits[-1] for exits in answered]), torch.tensor([len(exits) for exits in answered])

    def all_exits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Every exit's logits ``[depth, B, labels]``, every method run."""
        rows = [torch.cat(self._exits(ids, mask, leave=False))
                for ids, mask in program_rows(input_ids, attention_mask, self.min_length)]
        return torch.stack(rows, dim=1)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.answer(input_ids, attention_mask)[0]
