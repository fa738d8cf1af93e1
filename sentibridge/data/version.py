"""Data version: the DVC md5 of the input, computed the way DVC 3 computes it.

Computing it ourselves means every input has a version, tracked or not; where DVC has a
record of the same path (a ``.dvc`` file, or a ``dvc.lock`` dependency or output), we say
whether the data on disk still matches it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pathspec
import yaml

_CHUNK = 1 << 20


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _dvc_root(path: Path) -> Path | None:
    for folder in [path, *path.parents]:
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _ignored(path: Path) -> Callable[[Path], bool]:
    """DVC skips what ``.dvcignore`` files (gitignore syntax) name, from the repo root down."""
    root = _dvc_root(path.resolve())
    specs: list[tuple[Path, pathspec.PathSpec]] = []
    if root is not None:
        for ignore_file in [root / ".dvcignore", *path.resolve().rglob(".dvcignore")]:
            if ignore_file.is_file():
                lines = ignore_file.read_text(encoding="utf-8").splitlines()
                specs.append((ignore_file.parent, pathspec.PathSpec.from_lines("gitwildmatch", lines)))

    def ignored(file: Path) -> bool:
        file = file.resolve()
        return any(file.is_relative_to(base) and spec.match_file(file.relative_to(base).as_posix()) for base, spec in specs)

    return ignored


def dvc_md5(path: str | Path) -> str:
    """DVC 3's md5 of a file, or of a folder (``<md5 of the sorted entry list>.dir``)."""
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    ignored = _ignored(path)
    entries = sorted(
        (
            {"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()}
            for f in path.rglob("*")
            if f.is_file() and f.name != ".dvcignore" and not ignored(f)
        ),
        key=lambda e: e["relpath"],
    )
    listing = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(listing).hexdigest() + ".dir"


@dataclass(frozen=True)
class DataVersion:
    """``md5`` is what runs record; ``source`` says how it relates to DVC's own record."""

    md5: str
    source: str  # "dvc" (matches DVC's record), "dvc-modified" (differs from it), "content" (untracked)
    record: str | None = None  # the file holding DVC's record

    def as_metadata(self) -> dict[str, str]:
        return {"data_version": self.md5, "data_version_source": self.source, "dvc_record": self.record or ""}


def _recorded_md5(path: Path) -> tuple[str, Path] | None:
    """The md5 DVC recorded for ``path``: its ``.dvc`` file, else the nearest ``dvc.lock``."""
    dvc_file = path.with_name(path.name + ".dvc")
    if dvc_file.is_file():
        outs = (yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}).get("outs") or []
        if outs and outs[0].get("md5"):
            return outs[0]["md5"], dvc_file
    resolved = path.resolve()
    for folder in resolved.parents:
        lock = folder / "dvc.lock"
        if not lock.is_file():
            continue
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages") or {}
        for stage in stages.values():
            for entry in (stage.get("deps") or []) + (stage.get("outs") or []):
                if (folder / entry.get("path", "")).resolve() == resolved and entry.get("md5"):
                    return entry["md5"], lock
        break
    return None


def data_version(path: str | Path) -> DataVersion:
    """The data version of ``path`` (file or folder)."""
    path = Path(path)
    md5 = dvc_md5(path)
    recorded = _recorded_md5(path)
    if recorded is None:
        return DataVersion(md5=md5, source="content")
    value, record = recorded
    return DataVersion(md5=md5, source="dvc" if value == md5 else "dvc-modified", record=str(record))
