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
import contextvars
import datetime
import errno
import fcntl
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
from mobclf.protocol import CALL

MANIFEST = "manifest.json"
SCHEMA_VERSION = 2  # 2: the manifest carries a seal over its own content
SEAL = "manifest_sha256"
KINDS = ("dataset", "pretrained", "teacher", "student", "pruned", "quantized", "export", "cascade", "report")
_VERSIONED_PACKAGES = ("mobclf", "torch", "transformers", "tokenizers", "jieba", "numpy", "executorch")
RECIPE_STEP: contextvars.ContextVar[dict | None] = contextvars.ContextVar("recipe_step", default=None)
# the same, for a step the recipe runs as another process (under torchrun): JSON in this environment variable
RECIPE_STEP_VARIABLE = "MOBCLF_RECIPE_STEP"
"""Set by ``mobclf run`` while a step runs: the step's id and fingerprint, recorded in the lineage it writes."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seal(manifest: dict) -> str:
    """The sha256 of a manifest's content (every key but the seal itself, canonical JSON): an edited threshold or
    metric no longer matches it."""
    content = {key: value for key, value in manifest.items() if key != SEAL}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                          .encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Listing:
    """What a directory holds besides its manifest: files, folders and symbolic links (relative POSIX paths)."""

    files: list[str]
    folders: list[str]
    links: list[str]


def _scan(root: Path) -> _Listing:
    files, folders, links = [], [], []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                links.append(relative)
            elif path.is_dir():
                folders.append(relative)
            elif relative != MANIFEST:
                files.append(relative)
        dirnames[:] = [name for name in dirnames if not (here / name).is_symlink()]
    return _Listing(sorted(files), sorted(folders), sorted(links))


def _named(label: str, names: list[str]) -> str:
    return f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"


def _problems(root: Path, expected: dict) -> list[str]:
    """How ``root`` differs from the checksummed set ``expected``: missing, modified, unexpected files or folders,
    symbolic links (never followed: a link could point anywhere)."""
    listing = _scan(root)
    present = set(listing.files)
    parents = {parent.as_posix() for name in expected for parent in Path(name).parents}
    missing = sorted(set(expected) - present)
    changed = sorted(name for name in set(expected) & present if sha256_file(root / name) != expected[name])
    extra = sorted(present - set(expected)) + [f"{name}/" for name in listing.folders if name not in parents]
    return [_named(label, names) for label, names in (("missing", missing), ("modified", changed),
                                                      ("unexpected", extra), ("symbolic links", listing.links))
            if names]


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
        """The path of ``name`` inside this artifact: a checksummed file, or a folder holding some. A name that
        leads anywhere else (``../x``, an absolute path, a file the manifest does not list) is refused."""
        files = self.manifest["files"]
        inside = isinstance(name, str) and name and not Path(name).is_absolute() and ".." not in Path(name).parts
        if inside and (name in files or any(listed.startswith(name.rstrip("/") + "/") for listed in files)):
            return self.path / name
        raise UserError(f"names {name!r}, which is not a checksummed file of this artifact; re-run the stage that "
                        "makes it", path=self.path / MANIFEST)

    def ancestor(self, kind: str, instead: str = "") -> "Artifact | None":
        """The nearest artifact of ``kind`` in this artifact's lineage (a parent, else a parent's ancestor: a
        quantized model's teacher is its student's parent), verified and checked to be the very artifact it was
        made from (its manifest's sha256); None when the lineage names none. ``instead`` says how to name one by
        hand (e.g. "pass --teacher DIR") when the one the lineage names is gone or changed."""
        parents = self.manifest.get("lineage", {}).get("parents", [])
        for parent in sorted(parents, key=lambda parent: parent.get("kind") != kind):
            if parent.get("kind") not in (kind, "student", "pruned", "quantized"):
                continue  # only derived models lead further up, to their teacher and dataset
            advice = f"; {instead}" if instead else "; give the original or re-run the stages after it"
            if not Path(parent["path"]).is_dir():
                raise UserError(f"is gone, and {self.path} was made from it{advice}", path=parent["path"])
            found = load_artifact(Path(parent["path"]), kind=parent["kind"])
            if found.sha256 != parent.get("sha256"):
                raise UserError(f"is not the {parent['kind']} {self.path} was made from (it changed since){advice}",
                                path=found.path)
            if found.kind == kind:
                return found
            above = found.ancestor(kind, instead)
            if above is not None:
                return above
        return None


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
    """Where an artifact came from: its parents (absolute path, kind, sha256), the stage and its config with the
    equivalent command line (``protocol.CALL``, set by ``Stage.call``), seed, package versions, and the recipe step
    that made it (``mobclf run``)."""
    call = CALL.get()
    record = {
        "parents": [{"path": str(p.path.resolve()), "kind": p.kind, "sha256": p.sha256} for p in parents],
        "command": call["command"] if call else " ".join(["mobclf", *sys.argv[1:]]) if Path(sys.argv[0]).name == "mobclf"
        else " ".join(sys.argv),
        "seed": seed,
        "versions": package_versions(),
    }
    if call:
        record["stage"] = {"name": call["stage"], "config": call["config"]}
    step = RECIPE_STEP.get()
    if step is None and RECIPE_STEP_VARIABLE in os.environ:
        step = json.loads(os.environ[RECIPE_STEP_VARIABLE])
    if step is not None:
        record["recipe_step"] = step
    return record


# ---- claiming an output ------------------------------------------------------------------------------------------

_HELD: dict[Path, int] = {}  # output path → the descriptor of its lock file, while this process writes it


def _lock_file(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def lock(path: Path, what: str = "--out") -> None:
    """Hold an exclusive lock on ``path`` (an output or a recipe's work folder) until :func:`release`: a second
    mobclf writing the same place is refused at once instead of silently replacing the first one's result."""
    path = Path(path).absolute()
    if path in _HELD:
        return
    try:
        descriptor = os.open(_lock_file(path), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise UserError(f"cannot write here ({err.strerror}); choose another {what}", path=path) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # the holder before us removes the lock file as it lets go: ours must still be the file at that name
        current = os.fstat(descriptor).st_ino == os.stat(_lock_file(path)).st_ino
    except OSError as err:
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.ENOENT):
            os.close(descriptor)
            raise
        current = False
    if not current:
        os.close(descriptor)
        raise UserError(f"another mobclf is writing it right now; wait for it to finish or choose another {what}",
                        path=path) from None
    _HELD[path] = descriptor


def held() -> list[Path]:
    """The outputs this process has locked and is writing."""
    return list(_HELD)


def release(path: Path | None = None) -> None:
    """Let go of the lock on ``path`` (every lock this process holds when None)."""
    for held in [Path(path).absolute()] if path is not None else list(_HELD):
        descriptor = _HELD.pop(held, None)
        if descriptor is not None:
            with contextlib.suppress(OSError):
                os.unlink(_lock_file(held))
            os.close(descriptor)


def _enclosing_artifact(out: Path) -> Path | None:
    """The artifact directory ``out`` would be written inside of, if any (that would break its checksums)."""
    for parent in out.absolute().parents:
        if (parent / MANIFEST).is_file() and _mobclf_manifest(parent) is not None:
            return parent
    return None


def _mobclf_manifest(path: Path) -> dict | None:
    """The manifest of ``path`` if it parses as a mobclf manifest (kind and checksummed files), else None."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(manifest, dict) and manifest.get("kind") in KINDS and isinstance(manifest.get("files"), dict):
        return manifest
    return None


def check_output_dir(out: Path, force: bool) -> None:
    """Claim ``out`` before any long work: refuse to overwrite unless ``force``, and even then replace only a
    directory that is verifiably a mobclf artifact (a mobclf manifest, exactly its checksummed files, unmodified);
    refuse an ``out`` inside another artifact; make sure the place is writable; lock it against a concurrent
    mobclf; clear what an interrupted writer of ``out`` left behind."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError("exists and is not a directory; choose another --out", path=out)
    enclosing = _enclosing_artifact(out)
    if enclosing is not None:
        raise UserError(f"is inside the artifact {enclosing} (writing there would break its checksums); choose an "
                        "--out outside it", path=out)
    if out.is_dir() and any(out.iterdir()):
        manifest = _mobclf_manifest(out)
        if manifest is None:
            raise UserError("exists and is not a mobclf artifact; choose another --out (it will not be touched)",
                            path=out)
        if not force:
            raise UserError("already exists; pass --force to replace it or choose another --out", path=out)
        problems = _problems(out, manifest["files"])
        if problems:
            raise UserError("holds more or other than the artifact mobclf wrote (" + "; ".join(problems) + "), so "
                            "--force will not replace it; move those files away or choose another --out", path=out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create its folder ({err.strerror}); choose another --out", path=out) from None
    lock(out)
    for leftover in out.parent.glob(f".{out.name}.partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)  # an interrupted writer's; we hold the lock, so nobody's now


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator:
    """Write a text file atomically: yield a handle on a hidden temporary file beside ``path``, then sync it, give it
    the umask's permissions and rename it over ``path``; an error or a kill leaves ``path`` as it was."""
    path = Path(path)
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(partial, 0o666 & ~umask())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def umask() -> int:
    """The process's file-creation mask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def write_artifact(out: Path, kind: str, force: bool = False) -> Iterator[PendingArtifact]:
    """Write an artifact atomically: yield a temporary directory, then checksum, seal and write the manifest and
    swap the directory into place (the replaced one, if any, is removed only after the swap)."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}; expected one of {KINDS}")
    out = Path(out)
    check_output_dir(out, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp.chmod(0o777 & ~umask())
    try:
        pending = PendingArtifact(dir=tmp, manifest={"schema_version": SCHEMA_VERSION, "kind": kind})
        yield pending
        manifest = dict(pending.manifest)
        manifest["kind"] = kind
        manifest["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        listing = _scan(tmp)
        if listing.links:
            raise ValueError(f"artifacts hold no symbolic links: {listing.links}")
        manifest["files"] = {name: sha256_file(tmp / name) for name in listing.files}
        manifest[SEAL] = seal(manifest)
        partial = tmp / (MANIFEST + ".tmp")
        partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, tmp / MANIFEST)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except OSError as err:
        if err.filename is None:  # a full disk does not say which file: name the output being written
            err.filename = str(out)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        release(out)


def load_artifact(path: Path, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Open an artifact directory after checking that it is complete and unmodified (and of the expected kind)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError("no such artifact directory; give the --out of an earlier mobclf stage", path=path)
    manifest_path = path / MANIFEST
    if manifest_path.is_symlink() or not manifest_path.is_file():
        raise UserError(
            f"no {MANIFEST}: not a mobclf artifact, or one whose writing was interrupted; re-run the stage that makes it",
            path=path,
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"unreadable manifest ({err}); re-run the stage that makes it", path=manifest_path) from err
    if not isinstance(manifest, dict) or "kind" not in manifest or not isinstance(manifest.get("files"), dict):
        raise UserError("manifest lacks 'kind' or 'files'; re-run the stage that makes it", path=manifest_path)
    if manifest.get("schema_version") != SCHEMA_VERSION or SEAL not in manifest:
        raise UserError(f"manifest schema {manifest.get('schema_version')!r}, this mobclf reads {SCHEMA_VERSION}; "
                        "re-run the stage that makes it", path=manifest_path)
    if manifest[SEAL] != seal(manifest):
        raise UserError("the manifest was edited after it was written (its seal does not match its content); "
                        "re-run the stage that makes it", path=manifest_path)
    problems = _problems(path, manifest["files"])
    if problems:
        raise UserError("failed checksum verification (" + "; ".join(problems) + "); re-run the stage that makes it",
                        path=path)
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted and manifest["kind"] not in wanted:
        def a(word: str) -> str:
            return f"{'an' if str(word)[:1].lower() in 'aeiou' else 'a'} {word}"

        takes = ", ".join(wanted[:-1]) + " or " + wanted[-1] if len(wanted) > 1 else wanted[0]
        raise UserError(f"is {a(manifest['kind'])} artifact, but {a(takes)} artifact is needed here", path=path)
    return Artifact(path=path, manifest=manifest)
