"""The `prepare` stage of dvc.yaml: `dvc repro` rebuilds the prepared data, `dvc status` shows edits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, cli_env

pytestmark = pytest.mark.integration

DVC = Path(sys.executable).with_name("dvc")


def _dvc(repo: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **cli_env(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the stage runs `sentibridge`
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(repo.parent / "dvc-site"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    proc = subprocess.run([str(DVC), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def _status(repo: Path, home: Path) -> dict:
    return json.loads(_dvc(repo, home, "status", "--json").stdout or "{}")


def test_repro_rebuilds_prepared_data_and_status_names_the_change(tmp_path):
    if shutil.which("git") is None or not DVC.is_file():
        pytest.skip("git or the dvc executable next to the interpreter is missing")
    repo, home = tmp_path / "repo", tmp_path / "home"
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["prepare"]
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, capture_output=True, timeout=60)
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    for dep in stage["deps"]:
        copy = shutil.copytree if (REPO / dep).is_dir() else shutil.copy
        (repo / dep).parent.mkdir(parents=True, exist_ok=True)
        copy(REPO / dep, repo / dep)
    _dvc(repo, home, "init", "-q")

    _dvc(repo, home, "repro")
    prepared = repo / stage["outs"][0]
    assert {"train.parquet", "val.parquet", "test.parquet", "report.json"} <= {p.name for p in prepared.iterdir()}
    assert len(pd.read_parquet(prepared / "train.parquet")) > 0
    assert _status(repo, home) == {}  # up to date

    data = repo / "data" / "sample" / "reviews.jsonl"
    data.write_text(data.read_text(encoding="utf-8") + data.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    changed = _status(repo, home)["prepare"]
    assert {"changed deps": {"data/sample": "modified"}} in changed
