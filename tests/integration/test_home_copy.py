"""A copied home runs on its own: `sentibridge validate` in a copy of a home writes its run into
the copy's ZenML store and leaves the original home's config and database as they were."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from sentibridge.relocation import ZENML_DB, recorded_home
from tests.conftest import SAMPLE
from tests.integration.test_validate_cli import last_json, run_cli

pytestmark = pytest.mark.integration

#: The sample, without label issues: their embedder is not what a copied home is about.
VALIDATE = ["validate", "--data", str(SAMPLE), "--set", "data.label_issues=off", "--json"]


def pipeline_runs(home: Path) -> list[str]:
    with sqlite3.connect(f"file:{home / 'zenml' / ZENML_DB}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT name FROM pipeline_run ORDER BY created")]


def tracker_uri(home: Path) -> str:
    """The MLflow tracker's ``tracking_uri`` as the home's ZenML DB stores it (base64 JSON)."""
    with sqlite3.connect(f"file:{home / 'zenml' / ZENML_DB}?mode=ro", uri=True) as db:
        (blob,) = db.execute("SELECT configuration FROM stack_component WHERE name = 'sentibridge-mlflow-tracker'").fetchone()
    return json.loads(base64.b64decode(blob))["tracking_uri"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_validate_in_a_copied_home_leaves_the_original_untouched(home, tmp_path):
    first = run_cli(home, *VALIDATE)
    assert first.returncode == 0, first.stderr
    original_runs = pipeline_runs(home)
    assert len(original_runs) == 1
    config, database = home / "zenml" / "config.yaml", home / "zenml" / ZENML_DB
    before = digest(config), digest(database)

    copy = tmp_path / "copied-home"
    shutil.copytree(home, copy)
    second = run_cli(copy, *VALIDATE)
    assert second.returncode == 0, second.stderr
    assert "copied or moved from" in second.stderr  # one notice, then the usual output
    report = last_json(second)
    assert report["rows_in"] == 648 and report["pipeline_run_id"] != last_json(first)["pipeline_run_id"]

    # The original: same runs, same bytes.
    assert pipeline_runs(home) == original_runs
    assert (digest(config), digest(database)) == before
    assert tracker_uri(home) == f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    assert tracker_uri(copy) == f"sqlite:///{copy / 'mlflow' / 'mlflow.db'}"
    # The copy: its own store, with the original's run and the new one; cached steps load from
    # the copy's artifact store (the report above came from one).
    assert recorded_home(yaml.safe_load((copy / "zenml" / "config.yaml").read_text())) == copy
    assert pipeline_runs(copy)[:1] == original_runs and len(pipeline_runs(copy)) == 2
    with sqlite3.connect(copy / "zenml" / ZENML_DB) as db:
        uris = [row[0] for row in db.execute("SELECT uri FROM artifact_version")]
    assert uris and all(uri.startswith(str(copy)) for uri in uris)

    # Running the copy again is quiet: nothing left to re-point.
    third = run_cli(copy, *VALIDATE)
    assert third.returncode == 0, third.stderr
    assert "copied or moved from" not in third.stderr
    assert (digest(config), digest(database)) == before
