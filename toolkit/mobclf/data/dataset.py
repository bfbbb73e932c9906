"""Reading a dataset artifact (made by ``mobclf data prepare``) and unlabelled transfer texts.

Each split is one Arrow IPC stream file (``train.arrow``; columns ``text`` and ``labels``, a list of label names;
the file layout HF ``datasets`` keeps its tables in), memory-mapped, so nothing is read until asked for: a stage of
a 200k-article set holds the texts and the targets of the rows it works on, never the whole split.

    data = load_dataset(Path("runs/data"))
    texts = data.texts("train")                              # lazy: len(texts), texts[0], texts.take(rows)
    y = data.targets("val")                                  # float32 multi-hot [N, len(data.labels)]
    y = data.targets("train", rows=[5, 9], dtype=np.uint8)   # just those rows
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mobclf.artifacts import Artifact, load_artifact
from mobclf.data.readers import read_lines, read_jsonl
from mobclf.errors import UserError

SCHEMA = pa.schema([("text", pa.string()), ("labels", pa.list_(pa.string()))])
ROWS_PER_BATCH = 8192  # rows per Arrow record batch written


def split_file(split: str) -> str:
    return f"{split}.arrow"


class SplitWriter:
    """Writes one split file, a record batch of ``ROWS_PER_BATCH`` rows at a time: ``add`` rows, then ``close``."""

    def __init__(self, path: Path):
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, SCHEMA)
        self._texts: list[str] = []
        self._labels: list[list[str]] = []
        self.count = 0

    def add(self, text: str, labels: Sequence[str]) -> None:
        self._texts.append(text)
        self._labels.append(list(labels))
        self.count += 1
        if len(self._texts) == ROWS_PER_BATCH:
            self._flush()

    def _flush(self) -> None:
        self._writer.write_batch(pa.record_batch([self._texts, self._labels], schema=SCHEMA))
        self._texts, self._labels = [], []

    def close(self) -> None:
        if self._texts or not self.count:  # an empty split is one empty batch
            self._flush()
        self._writer.close()
        self._sink.close()


def take(column: pa.ChunkedArray, rows) -> list:
    """``column``'s values at ``rows`` (in that order) as Python objects, taken chunk by chunk: Arrow's own take on a
    chunked column first joins every chunk into one copy, the whole column, for each call."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.cumsum([0, *(len(chunk) for chunk in column.chunks)])
    chunk_of = np.searchsorted(starts, rows, side="right") - 1
    values = [None] * len(rows)
    for number in np.unique(chunk_of):
        positions = np.flatnonzero(chunk_of == number)
        taken = column.chunk(int(number)).take(pa.array(rows[positions] - starts[number])).to_pylist()
        for position, value in zip(positions.tolist(), taken):
            values[position] = value
    return values


def _read_table(path: Path) -> pa.Table:
    """A split file's table, memory-mapped (its pages are read when a column is used)."""
    return pa.ipc.open_stream(pa.memory_map(str(path))).read_all()


class Texts(Sequence[str]):
    """A column of texts, read on demand: ``texts[i]``, ``texts[a:b]`` and ``texts.take(rows)`` (lists of str),
    iteration a record batch at a time, and ``+`` to append more texts (e.g. unlabelled ones) without copying."""

    def __init__(self, column: pa.ChunkedArray):
        self.column = column

    @classmethod
    def of(cls, texts: Sequence[str] | Texts) -> Texts:
        """``texts`` as a :class:`Texts` (a list is converted, a :class:`Texts` kept)."""
        if isinstance(texts, Texts):
            return texts
        return cls(pa.chunked_array([pa.array(list(texts), pa.string())], pa.string()))

    def __len__(self) -> int:
        return len(self.column)

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self.take(range(start, stop, step))
            return self.column.slice(start, max(0, stop - start)).to_pylist()
        return self.column[int(key)].as_py()

    def take(self, rows) -> list[str]:
        """The texts of ``rows`` (any sequence of ints, a numpy array or a tensor), in that order."""
        return take(self.column, rows)

    def __iter__(self) -> Iterator[str]:
        for chunk in self.column.chunks:
            for start in range(0, len(chunk), ROWS_PER_BATCH):
                yield from chunk.slice(start, ROWS_PER_BATCH).to_pylist()

    def __add__(self, other: Sequence[str]) -> Texts:
        other = Texts.of(other)
        return Texts(pa.chunked_array(self.column.chunks + other.column.chunks, pa.string()))


class Dataset:
    """The splits of a verified dataset artifact, with targets in ``labels`` order."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self._tables: dict[str, pa.Table] = {}
        self._label_names = pa.array(self.labels, pa.string())
        self._position = {label: position for position, label in enumerate(self.labels)}

    @property
    def labels(self) -> list[str]:
        return self.artifact.labels

    @property
    def multi_label(self) -> bool:
        return self.artifact.manifest["multi_label"]

    @property
    def language(self) -> str:
        return self.artifact.manifest["language"]

    def _table(self, split: str) -> pa.Table:
        """The split's table, memory-mapped (its pages are read when a column is used)."""
        if split not in self.artifact.manifest["splits"]:
            raise UserError(f"has no split {split!r}; it has {', '.join(self.artifact.manifest['splits'])}",
                            path=self.artifact.path)
        if split not in self._tables:
            self._tables[split] = _read_table(self.artifact.file(split_file(split)))
        return self._tables[split]

    def texts(self, split: str) -> Texts:
        return Texts(self._table(split).column("text"))

    def targets(self, split: str, dtype: type = np.float32, rows=None) -> np.ndarray:
        """Multi-hot targets [N, len(labels)] of the split, or of its ``rows`` only (float32; training asks for
        uint8, a quarter of the memory with hundreds of labels)."""
        labels = self._table(split).column("labels")
        if rows is None:
            counts = pc.list_value_length(labels).to_numpy(zero_copy_only=False)
            positions = pc.index_in(pc.list_flatten(labels), value_set=self._label_names).to_numpy(
                zero_copy_only=False)
        else:
            taken = take(labels, rows)
            counts = np.array([len(row_labels) for row_labels in taken], dtype=np.int64)
            positions = np.array([self._position[label] for row_labels in taken for label in row_labels],
                                 dtype=np.int64)
        targets = np.zeros((len(counts), len(self.labels)), dtype=dtype)
        targets[np.repeat(np.arange(len(counts)), counts), positions] = 1
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
        """Examples per label (int64, ``labels`` order), counted over the label column."""
        counted = pc.value_counts(pc.list_flatten(self._table(split).column("labels")))
        by_name = dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()))
        return np.array([by_name.get(label, 0) for label in self.labels], dtype=np.int64)


def load_dataset(path: Path) -> Dataset:
    return Dataset(load_artifact(path, kind="dataset"))


def iter_texts(path: Path) -> Iterator[str]:
    """Unlabelled texts, a line at a time: JSON Lines with a "text" field (labels ignored) or plain .txt, one text
    per line.

    Blank lines are skipped; bad input raises :class:`~mobclf.errors.UserError` naming the file and line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return (row.text for row in read_jsonl(path, label_field=None))
    if suffix == ".txt":
        return (line for _, line in read_lines(path))
    raise UserError("unlabelled texts must be .jsonl (a \"text\" field per line) or .txt (one text per line)",
                    path=path)


def read_texts(path: Path) -> list[str]:
    """:func:`iter_texts` as a list (a few thousand unlabelled texts for distillation)."""
    return list(iter_texts(path))


def write_texts(path: Path, texts: Iterable[str]) -> int:
    """``texts`` into a text-only file of the split format (no labels), a record batch at a time; how many."""
    writer = SplitWriter(path)
    for text in texts:
        writer.add(text, ())
    writer.close()
    return writer.count


def open_texts(path: Path) -> Texts:
    """The texts of a split-format file (:func:`write_texts`), memory-mapped."""
    return Texts(_read_table(path).column("text"))
