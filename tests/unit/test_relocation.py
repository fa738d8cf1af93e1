"""Re-pointing a copied home (ZenML config and store, MLflow DB) on fake and real SQLite files,
and the rule for a local artifact store's path."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from sentibridge import relocation
from sentibridge.home import Home
from sentibridge.relocation import (
    ZENML_DB,
    moved_store_path,
    recorded_home,
    repoint_mlflow,
    repoint_sqlite,
    repoint_tree,
    repoint_zenml,
)


def zenml_config(root: Path) -> dict:
    """The store section ZenML writes for a home at ``root`` (as in a real config.yaml)."""
    database = root / "zenml" / ZENML_DB
    return {
        "active_stack_id": "0b58be2f",
        "store": {
            "backup_directory": f"{root}/zenml/database_backup",
            "database": str(database),
            "driver": "sqlite",
            "type": "sql",
            "url": f"sqlite:///{database}",
            "secrets_store": {"type": "sql"},
        },
        "version": "0.98.0",
    }


def make_zenml_home(root: Path) -> None:
    """A home at ``root`` with a config.yaml and a store DB that records ``root`` in its URIs."""
    (root / "zenml" / ZENML_DB).parent.mkdir(parents=True)
    (root / "zenml" / "config.yaml").write_text(yaml.safe_dump(zenml_config(root)), encoding="utf-8")
    with sqlite3.connect(root / "zenml" / ZENML_DB) as db:
        db.execute("CREATE TABLE artifact_version (id TEXT, uri VARCHAR, payload BLOB)")
        db.executemany(
            "INSERT INTO artifact_version VALUES (?, ?, ?)",
            [
                ("a", f"{root}/zenml/local_stores/store-1/split/data_report/1", b"x"),
                ("b", f"{root}-other/zenml/local_stores/store-1/x", f"{root}/as-blob".encode()),  # a sibling folder
                ("c", "s3://bucket/x", None),
            ],
        )
    os.utime(root / "zenml" / "config.yaml", (0, 0))


def artifact_uris(root: Path) -> list[str]:
    with sqlite3.connect(root / "zenml" / ZENML_DB) as db:
        return [row[0] for row in db.execute("SELECT uri FROM artifact_version ORDER BY id")]


# --- detection ---------------------------------------------------------------------------------


def test_recorded_home_reads_the_sqlite_store_url(tmp_path):
    assert recorded_home(zenml_config(tmp_path / "orig")) == tmp_path / "orig"


@pytest.mark.parametrize(
    "store",
    [
        {"url": "https://zenml.example.com", "type": "rest"},
        {"url": "sqlite:////data/my-own.db"},  # a user's own file: not our layout
        {"url": "sqlite:////x/elsewhere/local_stores/default_zen_store/zenml.db"},  # not <home>/zenml
        {},
    ],
)
def test_recorded_home_is_none_for_stores_outside_the_layout(store):
    assert recorded_home({"store": store}) is None


def test_repoint_tree_moves_paths_uris_and_urls_but_not_siblings(tmp_path):
    old, new = tmp_path / "orig", tmp_path / "copy"
    tree = {
        "a": f"{old}/x",
        "b": [f"sqlite:///{old}/db", f"{old.as_uri()}/art"],
        "c": f"{old}-2/x",
        "d": 3,
        "e": str(old),  # the root itself is never a stored location
    }
    assert repoint_tree(tree, old, new) == {
        "a": f"{new}/x", "b": [f"sqlite:///{new}/db", f"{new.as_uri()}/art"], "c": f"{old}-2/x", "d": 3, "e": str(old),
    }


# --- re-pointing a copied ZenML home ---------------------------------------------------------


def test_a_copied_zenml_home_is_repointed_and_the_original_untouched(tmp_path, capsys):
    orig, copy = tmp_path / "orig", tmp_path / "copy"
    make_zenml_home(orig)
    before = (orig / "zenml" / "config.yaml").read_bytes(), artifact_uris(orig)
    shutil.copytree(orig, copy)

    import zenml  # noqa: F401 - installs ZenML's console handler, which writes to stdout

    assert repoint_zenml(Home(root=copy, tracking_uri="")) == orig
    told = capsys.readouterr()
    # On stderr, as for a command, although ZenML was imported first.
    assert told.out == "" and f"copied or moved from {orig}" in told.err
    config = yaml.safe_load((copy / "zenml" / "config.yaml").read_text())
    assert config["store"]["url"] == f"sqlite:///{copy / 'zenml' / ZENML_DB}"
    assert config["store"]["database"] == str(copy / "zenml" / ZENML_DB)
    assert config["store"]["backup_directory"] == f"{copy}/zenml/database_backup"
    assert config["active_stack_id"] == "0b58be2f" and config["store"]["secrets_store"] == {"type": "sql"}
    assert artifact_uris(copy) == [
        f"{copy}/zenml/local_stores/store-1/split/data_report/1",
        f"{orig}-other/zenml/local_stores/store-1/x",
        "s3://bucket/x",
    ]
    with sqlite3.connect(copy / "zenml" / ZENML_DB) as db:
        assert db.execute("SELECT payload FROM artifact_version WHERE id = 'b'").fetchone()[0] == f"{orig}/as-blob".encode()
    assert ((orig / "zenml" / "config.yaml").read_bytes(), artifact_uris(orig)) == before
    # A second activation finds nothing to do.
    assert repoint_zenml(Home(root=copy, tracking_uri="")) is None


def test_a_home_in_place_is_left_alone(tmp_path):
    make_zenml_home(tmp_path / "orig")
    assert repoint_zenml(Home(root=tmp_path / "orig", tracking_uri="")) is None
    assert os.stat(tmp_path / "orig" / "zenml" / "config.yaml").st_mtime == 0


def test_a_rolled_back_database_leaves_the_config_for_the_next_run(tmp_path, monkeypatch):
    orig, copy = tmp_path / "orig", tmp_path / "copy"
    make_zenml_home(orig)
    shutil.copytree(orig, copy)

    def failing(database, old, new):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(relocation, "repoint_sqlite", failing)
    with pytest.raises(sqlite3.OperationalError):
        repoint_zenml(Home(root=copy, tracking_uri=""))
    assert recorded_home(yaml.safe_load((copy / "zenml" / "config.yaml").read_text())) == orig


def test_repoint_sqlite_is_one_transaction_over_text_columns(tmp_path):
    database = tmp_path / "x.db"
    old, new = Path("/old/home"), Path("/new/home")
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE t (a TEXT, b INTEGER, c)")
        db.execute("INSERT INTO t VALUES (?, 1, ?)", ("/old/home/a", "file:///old/home/b"))
        db.execute("INSERT INTO t VALUES (?, 2, ?)", ("/old/homework/a", "sqlite:////old/home/mlflow/mlflow.db"))
    assert repoint_sqlite(database, old, new) == 3
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT a, b, c FROM t ORDER BY b").fetchall() == [
            ("/new/home/a", 1, "file:///new/home/b"),
            ("/old/homework/a", 2, "sqlite:////new/home/mlflow/mlflow.db"),
        ]


# --- MLflow ------------------------------------------------------------------------------------


def test_a_copied_mlflow_db_gets_its_experiment_and_run_locations_back(tmp_path):
    import mlflow

    orig, copy = tmp_path / "orig", tmp_path / "copy"
    orig_home = Home(root=orig, tracking_uri="")
    orig_home.mlflow_dir.mkdir(parents=True)
    client = mlflow.MlflowClient(tracking_uri=orig_home.local_tracking_uri)
    experiment = client.create_experiment("sentibridge", artifact_location=(orig_home.mlflow_dir / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    shutil.copytree(orig, copy)

    copy_home = Home(root=copy, tracking_uri="")
    assert repoint_mlflow(copy_home) == orig
    copied = mlflow.MlflowClient(tracking_uri=copy_home.local_tracking_uri)
    assert copied.get_experiment(experiment).artifact_location == (copy / "mlflow" / "artifacts").as_uri()
    assert copied.get_run(run_id).info.artifact_uri.startswith((copy / "mlflow" / "artifacts").as_uri() + "/")
    assert client.get_experiment(experiment).artifact_location == (orig / "mlflow" / "artifacts").as_uri()
    assert repoint_mlflow(copy_home) is None


def test_no_mlflow_db_or_a_foreign_db_is_left_alone(tmp_path):
    home = Home(root=tmp_path, tracking_uri="")
    assert repoint_mlflow(home) is None
    home.mlflow_dir.mkdir()
    sqlite3.connect(home.mlflow_dir / "mlflow.db").close()  # empty: no experiments table
    assert repoint_mlflow(home) is None


# --- the local artifact store ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/orig/zenml/local_stores/abc", "{root}/zenml/local_stores/abc"),
        ("{root}/zenml/local_stores/abc", None),
        ("/data/my-artifacts", None),
        ("", None),
    ],
)
def test_moved_store_path(tmp_path, path, expected):
    home = Home(root=tmp_path, tracking_uri="")
    result = moved_store_path(path.format(root=tmp_path), home)
    assert result == (expected.format(root=tmp_path) if expected else None)
