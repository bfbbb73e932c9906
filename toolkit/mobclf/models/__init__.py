"""Model registry: an artifact's ``architecture`` ({"name", "config"}) rebuilds its module; weights are safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from torch import nn

from mobclf.artifacts import Artifact
from mobclf.errors import UserError
from mobclf.models.bert import BertClassifier, TinyBertClassifier
from mobclf.models.causal_lm import CausalLmClassifier
from mobclf.models.dpcnn import DPCNN
from mobclf.models.early_exit import EarlyExitBert
from mobclf.models.fasttext import FastText
from mobclf.models.rnn import BiLstmAttention, TextRNN
from mobclf.models.textcnn import TextCNN

ARCHITECTURES: dict[str, type[nn.Module]] = {"bert": BertClassifier, "tinybert": TinyBertClassifier, "textcnn": TextCNN,
                                             "dpcnn": DPCNN, "fasttext": FastText, "textrnn": TextRNN,
                                             "bilstm_attn": BiLstmAttention, "qwen2": CausalLmClassifier,
                                             "early_exit_bert": EarlyExitBert}
WEIGHTS = "model.safetensors"


def build_model(architecture: dict) -> nn.Module:
    name = architecture.get("name") if isinstance(architecture, dict) else None
    if name not in ARCHITECTURES:
        raise UserError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[name](architecture["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"the {name} architecture's config is incomplete or malformed ({err!r}); re-run the stage "
                        "that makes it") from None


def architecture_of(model: nn.Module) -> dict:
    name = next(key for key, cls in ARCHITECTURES.items() if type(model) is cls)
    return {"name": name, "config": model.config}


def save_weights(model: nn.Module, directory: Path) -> None:
    save_safetensors(model, str(Path(directory) / WEIGHTS))


def load_classifier(artifact: Artifact) -> nn.Module:
    """Rebuild an artifact's model from its manifest and load its weights (eval mode, CPU)."""
    model = build_model(artifact.manifest["architecture"])
    try:
        load_safetensors(model, str(artifact.file(WEIGHTS)), device="cpu")
    except (RuntimeError, ValueError, OSError) as err:  # weights of another geometry, or not safetensors at all
        reason = str(err).strip().splitlines()[0][:160]
        raise UserError(f"weights do not fit the architecture its manifest describes ({reason}); re-run the stage "
                        "that makes it", path=artifact.file(WEIGHTS)) from None
    return model.eval()


def set_dropout(model: nn.Module, p: float) -> nn.Module:
    """Every dropout layer of ``model`` (encoder, attention, head) drops with probability ``p``."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)
