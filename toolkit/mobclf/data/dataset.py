"""Reading a dataset artifact (made by ``mobclf data prepare``) and unlabelled transfer texts.

    data = load_dataset(Path("runs/data"))
    x, y = data.texts("train"), data.targets("train")   # y: float32 multi-hot [N, len(data.labels)]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobclf.artifacts import Artifact, load_artifact
from mobclf.data.readers import read_lines, read_jsonl
from mobclf.errors import UserError


@dataclass
class Example:
    text: str
    labels: list[str]


class Dataset:
    """The splits of a verified dataset artifact, with targets in ``labels`` order."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self._examples: dict[str, list[Example]] = {}

    @property
    def labels(self) -> list[str]:
        return self.artifact.labels

    @property
    def multi_label(self) -> bool:
        return self.artifact.manifest["multi_label"]

    @property
    def language(self) -> str:
        return self.artifact.manifest["language"]

    def examples(self, split: str) -> list[Example]:
        if split not in self.artifact.manifest["splits"]:
            raise UserError(f"has no split {split!r}; it has {', '.join(self.artifact.manifest['splits'])}",
                            path=self.artifact.path)
        if split not in self._examples:
            with open(self.artifact.file(f"{split}.jsonl"), encoding="utf-8") as handle:
                self._examples[split] = [Example(**json.loads(line)) for line in handle]
        return self._examples[split]

    def texts(self, split: str) -> list[str]:
        return [example.text for example in self.examples(split)]

    def targets(self, split: str, dtype: type = np.float32) -> np.ndarray:
        """Multi-hot targets [N, len(labels)] (float32; training keeps uint8, a quarter of the memory with hundreds
        of labels)."""
        index = {label: position for position, label in enumerate(self.labels)}
        examples = self.examples(split)
        targets = np.zeros((len(examples), len(self.labels)), dtype=dtype)
        for row, example in enumerate(examples):
            targets[row, [index[label] for label in example.labels]] = 1.0
        return targets

    def check_labels_of(self, *models: Artifact) -> None:
        """Refuse models whose outputs are not this dataset's labels, in this order (the one check every stage
        that pairs a model with a dataset makes)."""
        for model in models:
            if model.labels == self.labels:
                continue
            missing = [label for label in self.labels if label not in model.labels]
            extra = [label for label in model.labels if label not in self.labels]
            difference = "; ".join(part for part in (
                f"the dataset has {', '.join(map(repr, missing[:3]))}{' ...' if len(missing) > 3 else ''}"
                if missing else "",
                f"the model has {', '.join(map(repr, extra[:3]))}{' ...' if len(extra) > 3 else ''}"
                if extra else "") if part) or "the same labels in another order"
            raise UserError(f"the {model.kind} at {model.path} was trained on other labels ({difference}); use the "
                            "dataset it was trained on", path=self.artifact.path)

    def label_counts(self, split: str) -> np.ndarray:
        """Examples per label (int64, ``labels`` order)."""
        return self.targets(split, np.uint8).sum(axis=0, dtype=np.int64)


def load_dataset(path: Path) -> Dataset:
    return Dataset(load_artifact(path, kind="dataset"))


def read_texts(path: Path) -> list[str]:
    """Unlabelled texts: JSON Lines with a "text" field (labels ignored) or plain .txt, one text per line.

    Blank lines are skipped; bad input raises :class:`~mobclf.errors.UserError` naming the file and line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return [row.text for row in read_jsonl(path, label_field=None)]
    if suffix == ".txt":
        return [line for _, line in read_lines(path)]
    raise UserError("unlabelled texts must be .jsonl (a \"text\" field per line) or .txt (one text per line)",
                    path=path)
