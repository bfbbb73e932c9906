"""A dataset artifact's rows as written, read with pyarrow itself (not through mobclf's reader)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa


def split_rows(data: Path, split: str) -> list[tuple[str, tuple[str, ...]]]:
    """``(text, labels)`` of every row of ``split`` in the dataset artifact ``data``, in order."""
    table = pa.ipc.open_stream(pa.OSFile(str(Path(data) / f"{split}.arrow"))).read_all()
    return [(row["text"], tuple(row["labels"])) for row in table.to_pylist()]
