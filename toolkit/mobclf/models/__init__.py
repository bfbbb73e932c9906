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
from mobclf.models.textcnn import TextCNN

ARCHITECTURES: dict[str, type[nn.Module]] = {"bert": BertClassifier, "tinybert": TinyBertClassifier, "textcnn": TextCNN}
WEIGHTS = "model.safetensors"


def build_model(architecture: dict) -> nn.Module:
    name = architecture["name"]
    if name not in ARCHITECTURES:
        raise UserError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](architecture["config"])


def architecture_of(model: nn.Module) -> dict:
    name = next(key for key, cls in ARCHITECTURES.items() if type(model) is cls)
    return {"name": name, "config": model.config}


def save_weights(model: nn.Module, directory: Path) -> None:
    save_safetensors(model, str(Path(directory) / WEIGHTS))


def load_classifier(artifact: Artifact) -> nn.Module:
    """Rebuild an artifact's model from its manifest and load its weights (eval mode, CPU)."""
    model = build_model(artifact.manifest["architecture"])
    load_safetensors(model, str(artifact.file(WEIGHTS)), device="cpu")
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but no CUDA device is available; use --device cpu or auto")
    return torch.device(name)
