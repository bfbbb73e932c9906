"""The artifact directory: the one contract between mobclf stages.

Every stage reads artifact directories and writes one. A directory holds ``manifest.json`` (kind, architecture,
tokenizer spec, labels, thresholds, metrics, lineage and the sha256 of every other file) next to its files
(``model.safetensors``, ``tokenizer/``, data splits, ...). Writing is atomic: files go to a hidden sibling
directory that is renamed into place only once the manifest is complete. Loading verifies every checksum, so a
half-written or edited directory is refused with a message that says what is wrong.

    with write_artifact(out, kind="teacher", force=False) as art:
        save_file(weights, art.dir / "model.safetensors")
        art.manifest["labels"] = labels
    teacher = load_artifact(out, kind="teacher")
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterator

from mobclf.errors import UserError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
KINDS = ("dataset", "pretrained", "teacher", "student", "pruned", "quantized", "export", "report")
_VERSIONED_PACKAGES = ("mobclf", "torch", "transformers", "tokenizers", "jieba", "numpy", "executorch")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _list_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


@dataclass
class Artifact:
    """A verified artifact directory and its manifest."""

    path: Path
    manifest: dict

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    @property
    def sha256(self) -> str:
        """Identity of the whole directory: the hash of its manifest, which lists the hash of every file."""
        return sha256_file(self.path / MANIFEST)

    def file(self, name: str) -> Path:
        return self.path / name


@dataclass
class PendingArtifact:
    """An artifact being written: put files under ``dir`` and fields into ``manifest``."""

    dir: Path
    manifest: dict = field(default_factory=dict)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def lineage(parents: list[Artifact], seed: int | None = None) -> dict:
    """Where an artifact came from: its parents (path, kind, sha256), the command line, seed and package versions."""
    return {
        "parents": [{"path": str(p.path), "kind": p.kind, "sha256": p.sha256} for p in parents],
        "command": " ".join(["mobclf", *sys.argv[1:]]) if Path(sys.argv[0]).name == "mobclf" else " ".join(sys.argv),
        "seed": seed,
        "versions": package_versions(),
    }


def check_output_dir(out: Path, force: bool) -> None:
    """Refuse to overwrite anything unless ``force``, and never replace a directory that is not an artifact."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError("exists and is not a directory; choose another --out", path=out)
    entries = list(out.iterdir())
    if entries and not (out / MANIFEST).is_file():
        raise UserError("exists and is not a mobclf artifact; choose another --out (it will not be touched)", path=out)
    if entries and not force:
        raise UserError("already exists; pass --force to replace it or choose another --out", path=out)


@contextlib.contextmanager
def write_artifact(out: Path, kind: str, force: bool = False) -> Iterator[PendingArtifact]:
    """Write an artifact atomically: yield a temporary directory, then checksum, write the manifest and rename."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; expected one of {KINDS}")
    out = Path(out)
    check_output_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        pending = PendingArtifact(dir=tmp, manifest={"schema_version": SCHEMA_VERSION, "kind": kind})
        yield pending
        manifest = dict(pending.manifest)
        manifest["kind"] = kind
        manifest["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        manifest["files"] = {name: sha256_file(tmp / name) for name in _list_files(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def load_artifact(path: Path, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Open an artifact directory after checking that it is complete and unmodified (and of the expected kind)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError("no such artifact directory; give the --out of an earlier mobclf stage", path=path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(
            f"no {MANIFEST}: not a mobclf artifact, or one whose writing was interrupted; re-run the stage that makes it",
            path=path,
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"unreadable manifest ({err}); re-run the stage that makes it", path=manifest_path) from err
    expected = manifest.get("files")
    if not isinstance(expected, dict) or "kind" not in manifest:
        raise UserError("manifest lacks 'kind' or 'files'; re-run the stage that makes it", path=manifest_path)
    present = set(_list_files(path))
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    changed = sorted(name for name in set(expected) & present if sha256_file(path / name) != expected[name])
    problems = [f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                for label, names in (("missing", missing), ("modified", changed), ("unexpected", extra)) if names]
    if problems:
        raise UserError(
            "failed checksum verification (" + "; ".join(problems) + "); re-run the stage that makes it", path=path
        )
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted and manifest["kind"] not in wanted:
        raise UserError(f"is a {manifest['kind']} artifact, but a {' or '.join(wanted)} artifact is needed here",
                        path=path)
    return Artifact(path=path, manifest=manifest)
