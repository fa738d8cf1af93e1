"""A plain ``MLFLOW_TRACKING_URI``, as any MLflow user sets it: no ZenML stack, real servers on loopback.

One home goes through what a user does: train against a team server without auth, then move to
a server with basic auth, first with a wrong and a missing password (one line, exit 1, nothing
registered), then the right one (the tracker is re-registered for the new URI and credentials,
and the model lands on that server). A tiny Gemma-3 stands in for the base model: the servers
and the stack are what is tested here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_fork import run_sentibridge
from tests.conftest import SAMPLE, TINY_MODEL, TINY_TRAIN, cli_env
from tests.loopback import Server, mlflow_server

pytestmark = pytest.mark.integration

ADMIN, PASSWORD = "admin", "a-password-only-the-test-knows"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(no auth, basic auth) `mlflow server`s, started together and always stopped."""
    root = tmp_path_factory.mktemp("plain_mlflow")
    pair = (mlflow_server(root / "open"), mlflow_server(root / "auth", auth=(ADMIN, PASSWORD)))
    try:
        for server in pair:
            server.start()
        for server in pair:
            server.wait()
        yield pair
    finally:
        for server in pair:
            server.stop()


def train(home: Path, server: Server, **credentials: str) -> subprocess.CompletedProcess:
    """`sentibridge train --json` with only MLFLOW_* variables pointing at ``server``."""
    env = {**cli_env(home), "MLFLOW_TRACKING_URI": server.url, **credentials}
    return run_sentibridge(
        ["train", "--data", str(SAMPLE), "--json", *TINY_TRAIN, "--set", "train.max_steps=3", *TINY_MODEL], env=env, timeout=900
    )


def registered(server: Server, credentials: tuple[str, str] | None = None) -> dict[str, list[str]]:
    """Registered models on ``server`` and their versions, read with MLflow's own client."""
    code = (
        "import json, mlflow; c = mlflow.MlflowClient();"
        "print(json.dumps({m.name: sorted(v.version for v in c.search_model_versions(f\"name='{m.name}'\"))"
        " for m in c.search_registered_models()}))"
    )
    env = {**cli_env(Path("/nonexistent"), seeded=False), "MLFLOW_TRACKING_URI": server.url}
    if credentials:
        env.update(MLFLOW_TRACKING_USERNAME=credentials[0], MLFLOW_TRACKING_PASSWORD=credentials[1])
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["ok"] is False
    return errors[0]


def test_a_plain_uri_trains_and_registers_then_moves_to_a_server_with_auth(servers, tmp_path):
    open_server, auth_server = servers
    home = tmp_path / "home"

    proc = train(home, open_server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["tracking_uri"] == open_server.url
    assert registered(open_server) == {result["registered_model"]: [str(result["model_version"])]}

    wrong = one_line_error(train(home, auth_server, MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD="wrong"))
    assert auth_server.url in wrong and "401" in wrong, wrong
    missing = one_line_error(train(home, auth_server))
    assert auth_server.url in missing and "401" in missing, missing
    half = one_line_error(train(home, auth_server, MLFLOW_TRACKING_USERNAME=ADMIN))
    assert "MLFLOW_TRACKING_PASSWORD" in half, half
    assert registered(auth_server, (ADMIN, PASSWORD)) == {}

    proc = train(home, auth_server, MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=PASSWORD)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["tracking_uri"] == auth_server.url
    assert registered(auth_server, (ADMIN, PASSWORD)) == {result["registered_model"]: [str(result["model_version"])]}
    assert PASSWORD not in proc.stdout + proc.stderr
    # The password reached neither the run's params nor its tags on the server.
    code = (
        "import json, mlflow; c = mlflow.MlflowClient(); r = c.get_run(%r);"
        "print(json.dumps({**r.data.params, **r.data.tags}))" % result["mlflow_run_id"]
    )
    env = {**cli_env(tmp_path / "reader"), "MLFLOW_TRACKING_URI": auth_server.url,
           "MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    logged = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert logged.returncode == 0 and PASSWORD not in logged.stdout, logged.stderr[-2000:]
