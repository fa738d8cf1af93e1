"""Two "machines" (two processes with two homes) that share only an MLflow server and a lock
database (``registry.lock_url``) gate at once: exactly one becomes champion, and the other
decides again against it. The barrier pattern is the one of the unit race test
(``tests/unit/registry/test_registry.py``), here against a real ``mlflow server``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sentibridge.registry import promotion as registry
from sentibridge.registry.registration import f1_tags
from tests.conftest import REPO, cli_env
from tests.loopback import mlflow_server as loopback_mlflow_server

pytestmark = pytest.mark.integration

MLFLOW = Path(sys.executable).with_name("mlflow")



@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on a SQLite store (``tests.loopback``), up when ``/health`` answers."""
    if not MLFLOW.is_file():
        pytest.skip("the mlflow executable next to the interpreter is missing")
    server = loopback_mlflow_server(tmp_path / "server")
    server.start()
    try:
        server.wait()
        yield server.url
    finally:
        server.stop()


def test_two_machines_sharing_only_mlflow_and_a_lock_database_leave_one_champion(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    client = registry.client(mlflow_server)
    name = "cross-machine"
    client.create_registered_model(name)
    experiment = client.create_experiment("race")
    versions = []
    for _ in range(2):  # equal candidates: each beats the base model, neither beats the other
        run = client.create_run(experiment)
        version = client.create_model_version(
            name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=f1_tags({"en": 0.8, "hi": 0.6})
        )
        versions.append(str(version.version))
    shared = tmp_path / "shared"  # what both machines mount: only the lock database
    shared.mkdir()
    lock_url = f"sqlite:///{shared / 'locks.db'}"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = []
    for k, version in enumerate(versions):
        env = {**cli_env(tmp_path / f"home-{k}"), "MLFLOW_TRACKING_URI": mlflow_server}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.promotion_racer", name, version, str(barrier), "--lock-url", lock_url],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["home"] != results[1]["home"]
    promoted = [r for r in results if r["promoted"]]
    assert len(promoted) == 1, results
    loser = next(r for r in results if not r["promoted"])
    assert any("champion moved" in reason for reason in loser["reasons"]), loser
    aliases = {v["version"]: v["aliases"] for v in registry.list_versions(client, name)}
    assert aliases == {promoted[0]["version"]: ["champion"], loser["version"]: ["challenger"]}
    assert not any((tmp_path / f"home-{k}" / "locks").exists() for k in range(2))  # no file lock was used
