"""A copied or moved home: re-pointing the absolute locations its stores still record.

ZenML's config and SQLite store and MLflow's SQLite DB record absolute paths: the store URL,
artifact, visualization and log URIs (ZenML), experiment, run and model locations (MLflow).
A copy of a home would read and write the original's files through them. Neither ZenML nor
MLflow has an API to rewrite an artifact URI once stored, so this module rewrites the tables
with raw SQL, before ZenML is imported (``home.activate``). It knows the stores' layouts
only from what they write (the home layout's SQLite URL, MLflow's ``experiments`` table);
``tests/integration/test_home_copy.py`` pins that on the installed ZenML and MLflow.

A local artifact store with an explicit path is moved through ZenML's own API instead, once
ZenML is imported (``stack.ensure_stack`` with ``moved_store_path``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # home imports this module: the type only, to keep imports one-way
    from sentibridge.home import Home

#: Where ZenML keeps its SQLite store, relative to its config folder (``<home>/zenml``).
ZENML_DB = Path("local_stores") / "default_zen_store" / "zenml.db"


def _notice(message: str) -> None:
    """Tell the user on stderr, as the docs promise, whatever was imported before.

    Not ``logging``: once ZenML is imported its console handler writes to stdout, where a
    ``--json`` command's one document goes (a caller that imported ZenML first would get it there).
    """
    print(message, file=sys.stderr, flush=True)


def recorded_home(zenml_config: dict) -> Path | None:
    """The home a ZenML ``config.yaml`` was written in, from its SQLite store URL.

    None when the store is not a SQLite file in the home layout (a server, a user's own file).
    """
    url = str((zenml_config.get("store") or {}).get("url") or "")
    if not url.startswith("sqlite:///"):
        return None
    database = Path(url.removeprefix("sqlite:///"))
    if database.parts[-len(ZENML_DB.parts):] != ZENML_DB.parts or database.parents[2].name != "zenml":
        return None
    return database.parents[3]


def repoint_tree(node, old: Path, new: Path):
    """``node`` (nested dicts, lists, strings) with every path or URL under ``old`` moved under ``new``."""
    if isinstance(node, dict):
        return {k: repoint_tree(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [repoint_tree(v, old, new) for v in node]
    if isinstance(node, str):
        for before, after in _prefixes(old, new):
            if node.startswith(before):
                return after + node[len(before):]
    return node


def _prefixes(old: Path, new: Path) -> list[tuple[str, str]]:
    # Longest first: "sqlite:////a/b/" must not be caught by a shorter form.
    pairs = [(f"sqlite:///{old}/", f"sqlite:///{new}/"), (old.as_uri() + "/", new.as_uri() + "/"), (f"{old}/", f"{new}/")]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def repoint_zenml(home: Home) -> Path | None:
    """Re-point a copied home's ZenML config and store to ``home``; return the old home, if any.

    Runs before ZenML is imported: ZenML would otherwise open the store the config names,
    i.e. the original home's database.
    """
    import yaml

    config_file = home.zenml_config / "config.yaml"
    if not config_file.is_file():
        return None
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    old = recorded_home(config) if isinstance(config, dict) else None
    if old is None or old == home.root:
        return None
    database = home.zenml_config / ZENML_DB
    if database.is_file():
        # Artifact, visualization and log URIs: without this a cached step of the copy would
        # hand back artifacts that live (or lived) in the original home.
        repoint_sqlite(database, old, home.root)
    # The config last: should the database fail, the next run finds the old home again.
    config["store"] = repoint_tree(config["store"], old, home.root)
    staged = config_file.with_suffix(".yaml.tmp")
    staged.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    staged.replace(config_file)
    _notice(f"this home was copied or moved from {old}: its ZenML store now points at {home.root}")
    return old


def mlflow_recorded_home(database: Path) -> Path | None:
    """The home an MLflow SQLite DB was written in, from its experiments' artifact locations.

    ``stack.ensure_experiment`` puts artifacts at ``<home>/mlflow/artifacts``; other locations
    (a user's own artifact root) say nothing about the home.
    """
    from urllib.parse import unquote, urlparse

    with contextlib.closing(sqlite3.connect(database)) as db:
        try:
            locations = [row[0] for row in db.execute("SELECT artifact_location FROM experiments")]
        except sqlite3.DatabaseError:  # not (yet) an MLflow DB
            return None
    for location in locations:
        if not location or not location.startswith("file://"):
            continue
        path = Path(unquote(urlparse(location).path))
        if path.parts[-2:] == ("mlflow", "artifacts"):
            return path.parents[1]
    return None


def repoint_mlflow(home: Home) -> Path | None:
    """Re-point a copied home's MLflow DB (experiment, run and model locations) to ``home``."""
    from sentibridge.errors import SentibridgeError

    database = home.mlflow_dir / "mlflow.db"
    if not database.is_file():
        return None
    old = mlflow_recorded_home(database)
    if old is None or old == home.root:
        return None
    try:
        repoint_sqlite(database, old, home.root)
    except sqlite3.Error as exc:
        raise SentibridgeError(
            f"{database}: this home was copied from {old} and its MLflow DB cannot be re-pointed ({exc}); "
            f"its runs would write into {old}"
        ) from None
    _notice(f"this home was copied or moved from {old}: its MLflow DB now points at {home.root}")
    return old


def repoint_sqlite(database: Path, old: Path, new: Path) -> int:
    """Move every text value under ``old`` (path, file URI or SQLite URL) under ``new``; rows changed.

    One transaction over all text columns of all tables: the stores record absolute paths in
    several places (ZenML: artifact, visualization and log URIs; MLflow: experiment, run and
    model locations), and a partial rewrite would leave a home half in the original.
    """
    changed = 0
    with contextlib.closing(sqlite3.connect(database)) as db, db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")') if _is_text(row[2])]
            for column, (before, after) in ((c, p) for c in columns for p in _prefixes(old, new)):
                changed += db.execute(
                    f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                    f'WHERE typeof("{column}") = \'text\' AND substr("{column}", 1, ?) = ?',
                    (after, len(before) + 1, len(before), before),
                ).rowcount
    return changed


def _is_text(declared: str) -> bool:
    declared = declared.upper()
    return not declared or any(kind in declared for kind in ("CHAR", "TEXT", "CLOB"))


def moved_store_path(path: str, home: Home) -> str | None:
    """Where a local artifact store's explicit ``path`` belongs after the home was copied.

    ZenML's default store has no path (it follows ``ZENML_CONFIG_PATH``); one set inside another
    home's ``zenml/local_stores`` is moved to the same place in this home. None: leave it.
    """
    parts = Path(path).parts
    for i in range(len(parts) - 1):
        if parts[i : i + 2] == ("zenml", "local_stores"):
            if Path(*parts[:i]) == home.root:
                return None
            return str(home.root.joinpath(*parts[i:]))
    return None
