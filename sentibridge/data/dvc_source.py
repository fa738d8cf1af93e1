"""Data at a git revision, through DVC: ``sentibridge train --data-rev REV``.

``dvc.api.DVCFileSystem(repo, rev=REV)`` sees the repository as it was at REV: files in git
come from git, DVC-tracked files from the local cache or, when they are not there, from the
DVC remote. The data is copied out once per version into ``<home>/data-revisions/<md5>/``, so
a second run at the same revision reads the same folder (and ZenML's step cache still hits).
The version is the copy's DVC md5, computed the way ``dvc add`` does.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

import yaml

from sentibridge.data.version import DataVersion, dvc_md5
from sentibridge.errors import DataError


def _repo_root(start: Path) -> Path:
    for folder in [start, *start.parents]:
        if (folder / ".dvc").is_dir():
            return folder
    raise DataError(f"--data-rev needs a DVC repository: no .dvc folder in {start} or above it")


def _in_repo(path: str, root: Path) -> str:
    """``path`` (relative to the working directory, or absolute) as a path inside the repository."""
    absolute = (Path.cwd() / path).resolve()
    try:
        return PurePosixPath(absolute.relative_to(root)).as_posix()
    except ValueError:
        raise DataError(f"{path}: outside the DVC repository {root}, so it has no revisions") from None


def _recorded_md5(fs, inside: str) -> str | None:
    """The md5 that ``<path>.dvc`` at the revision records, if there is such a file."""
    record = f"{inside}.dvc"
    if not fs.isfile(record):
        return None
    outs = (yaml.safe_load(fs.read_text(record)) or {}).get("outs") or []
    return outs[0].get("md5") if outs else None


def read_at_revision(path: str, rev: str, into: Path) -> tuple[Path, DataVersion]:
    """Copy ``path`` as of git revision ``rev`` to ``into/<md5>/<name>``: (the copy, its version).

    ``source`` is ``dvc`` when the revision's ``.dvc`` file records the same md5,
    ``dvc-modified`` when it records another, ``content`` without one; ``record`` is
    ``<commit>:<path>``, the exact place the data came from.
    """
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException

    root = _repo_root(Path.cwd().resolve())
    inside = _in_repo(path, root)
    try:
        fs = DVCFileSystem(str(root), rev=rev)
        commit = fs.repo.get_rev()
        if not fs.exists(inside):
            raise DataError(f"{path}: not found at revision {rev} ({commit[:12]}) of {root}")
        recorded = _recorded_md5(fs, inside)
        name = PurePosixPath(inside).name
        # Hashed outside any DVC repository, so no .dvcignore or hash cache of ours gets in the way.
        with tempfile.TemporaryDirectory(prefix="sentibridge-rev-") as scratch:
            copy = Path(scratch) / name
            fs.get(inside, str(copy), recursive=True)
            md5 = dvc_md5(copy)
            final = into / md5.removesuffix(".dir") / name
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(copy), str(final))
    except DvcException as exc:  # an unknown revision, or data neither in the cache nor on the remote
        raise DataError(f"--data-rev {rev}: {_first_line(exc)}") from None
    source = "content" if recorded is None else ("dvc" if recorded == md5 else "dvc-modified")
    return final, DataVersion(md5=md5, source=source, record=f"{commit}:{inside}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
