"""Data version: the DVC md5 of the input, computed by DVC's own hashing (``dvc_data``).

Computing it ourselves means every input has a version, tracked or not; where DVC has a
record of the same path (a ``.dvc`` file, or a ``dvc.lock`` dependency or output), we say
whether the data on disk still matches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from sentibridge.errors import DataError


def _dvc_root(path: Path) -> Path | None:
    for folder in [path, *path.parents]:
        if (folder / ".dvc").is_dir():
            return folder
    return None


def dvc_md5(path: str | Path) -> str:
    """DVC 3's md5 of a file, or of a folder (``<md5 of the sorted entry list>.dir``).

    Inside a DVC repository the repository's ``.dvcignore`` rules apply and the per-file
    hashes go through DVC's state (its hash cache keyed by inode, mtime and size, shared
    with ``dvc add`` and ``dvc status``): hashing unchanged data again only stats the files.
    Elsewhere every file is read.
    """
    from dvc_data.hashfile.build import IgnoreInCollectedDirError, build  # lazy: DVC takes ~0.5 s to import
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs import LocalFileSystem, MemoryFileSystem

    path = Path(path).resolve()
    root = _dvc_root(path)

    def md5(fs, state, ignore) -> str:
        odb = HashFileDB(MemoryFileSystem(), "/sentibridge-staging", state=state, hash_name="md5")
        try:
            _, _, obj = build(odb, str(path), fs, "md5", dry_run=True, ignore=ignore)
        except IgnoreInCollectedDirError as exc:  # DVC refuses to `dvc add` such a folder, too
            raise DataError(f"{path}: {exc}") from None
        return obj.hash_info.value

    if root is None:
        from dvc_data.hashfile.state import StateNoop

        return md5(LocalFileSystem(), StateNoop(), None)
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return md5(repo.fs, repo.state, repo.dvcignore)


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
