"""sentibridge on a team's services, on loopback: a ZenML server, an S3 artifact store, MLflow with auth.

One real `sentibridge train` runs through a remote stack to a registered champion; every step
artifact lives in the S3 bucket and loads back through the ZenML client; `predict` uses the
champion from the same servers. Then the failures a team meets: no or wrong MLflow credentials,
a tracking server answering 500, and the tracking server stopped mid-session. Each ends in one
`error:` line and exit 1, and nothing trains or is registered.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.cli_fork import CONSOLE_SCRIPT, run_sentibridge
from tests.conftest import SAMPLE, TINY_MODEL, TINY_TRAIN
from tests.integration.remote.conftest import ADMIN, ADMIN_PASSWORD, BUCKET, REPO, STACK, Remote, bucket_keys

pytestmark = [pytest.mark.integration, pytest.mark.remote]

SENTIBRIDGE = CONSOLE_SCRIPT  # the console script, for the tests about the process itself
#: A 2-step model cannot beat the base model on every language with 3 test rows each.
LENIENT = ["--set", "gate.mode=no_regression", "--set", "gate.max_drop=100", "--set", "gate.min_gain=0"]


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([SENTIBRIDGE, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 900) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_sentibridge(list(args), env=env, timeout=900)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a failed command (and nothing else on stderr that looks like one)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


def last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def version_count(remote: Remote, name: str = "sentibridge-sentiment") -> int:
    """Registered versions of ``name``, read from the server's database (works while it is stopped)."""
    with contextlib.closing(sqlite3.connect(remote.root / "mlflow" / "mlflow.db")) as db:
        return db.execute("SELECT count(*) FROM model_versions WHERE name = ?", (name,)).fetchone()[0]


#: Reads each artifact of the run back through the ZenML client (from S3) and describes it.
LOAD_ARTIFACTS = """
import json, os, sys
from pathlib import Path
from zenml.client import Client
from zenml.utils import source_utils
source_utils.set_custom_source_root(os.getcwd())  # the materializers are imported from the repo
run = Client().get_pipeline_run(sys.argv[1])
def artifact(step, name):
    return run.steps[step].outputs[name][0]
out = {}
for step, name in [("instructions", "train_records"), ("augment", "retrieval_index"), ("demonstrations", "demonstration_store"),
                   ("train", "lora_adapter"), ("gate", "decision"), ("split", "train_rows")]:
    a = artifact(step, name)
    value = a.load()
    if isinstance(value, Path):
        value = sorted(p.relative_to(value).as_posix() for p in value.rglob("*") if p.is_file())
    elif isinstance(value, dict):
        value = sorted(value)
    else:
        value = len(value)
    out[name] = {"uri": a.uri, "value": value}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def trained(remote_session: Remote, tmp_path_factory):
    """One `sentibridge train` on the remote stack, then `predict --model champion`."""
    root = tmp_path_factory.mktemp("remote-train")
    home = root / "home"
    env = remote_session.env(home)
    started = time.perf_counter()
    # Augmentation on (it is off by default), so the FAISS index has vectors to round-trip through S3.
    train = run(env, "train", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL, *LENIENT, "--set", "augment.enabled=true", "--json")
    assert train.returncode == 0, train.stderr[-4000:]
    print(f"remote train took {time.perf_counter() - started:.0f} s")
    (root / "in.csv").write_text("text,language\nI love this phone,en\nC'est nul,fr\n", encoding="utf-8")
    predict = run(env, "predict", "--input", str(root / "in.csv"), "--output", str(root / "out.csv"), "--json")
    return {"home": home, "env": env, "train": last_json(train), "train_stderr": train.stderr, "predict": predict,
            "out": root / "out.csv"}


def test_train_on_the_remote_stack_registers_a_champion(trained, remote_session):
    result = trained["train"]
    assert result["ok"] and result["promoted"] is True
    assert result["tracking_uri"] == remote_session.mlflow.url
    assert version_count(remote_session) >= 1


def test_every_artifact_is_in_the_bucket_and_loads_back(trained, remote_session):
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_ARTIFACTS, trained["train"]["pipeline_run_id"]],
        env=trained["env"], cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    artifacts = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, artifact in artifacts.items():
        assert artifact["uri"].startswith(f"s3://{BUCKET}/zenml/"), (name, artifact["uri"])
        prefix = artifact["uri"].removeprefix(f"s3://{BUCKET}/")
        assert bucket_keys(remote_session, prefix), f"{name}: nothing in the bucket under {prefix}"
    assert artifacts["train_records"]["value"] > 0
    assert artifacts["retrieval_index"]["value"] > 0  # the FAISS index, through a temp folder
    assert any(f.endswith(".npy") for f in artifacts["demonstration_store"]["value"])
    assert "adapter_model.safetensors" in artifacts["lora_adapter"]["value"]
    assert "promote" in artifacts["decision"]["value"]
    assert artifacts["train_rows"]["value"] > 0


def test_predict_with_the_champion_from_the_servers(trained):
    proc = trained["predict"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert last_json(proc)["predicted"] == 2
    labels = pd.read_csv(trained["out"])
    assert len(labels) == 2 and labels.notna().any(axis=None)


@pytest.mark.parametrize("credentials", [None, (ADMIN, "wrong-password")], ids=["no-credentials", "wrong-password"])
def test_without_valid_credentials_nothing_is_registered(remote, credentials, tmp_path):
    env = remote.env(tmp_path / "home", credentials=credentials)
    before = version_count(remote)
    (tmp_path / "in.csv").write_text("text\ngood\n", encoding="utf-8")
    procs = {
        "train": start(env, "train", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL, "--json"),
        "predict": start(env, "predict", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv"), "--json"),
    }
    for command, proc in procs.items():
        done = finish(proc)
        assert done.returncode == 1, (command, done.stderr[-3000:])
        line = error_line(done)
        assert remote.mlflow.url in line and "401" in line, line
        assert last_json(done) == {"ok": False, "error": line.removeprefix("error: ")}
        assert "trained" not in done.stdout
    assert version_count(remote) == before


#: Sets one value of a ZenML secret through the client, as a user fixing (or breaking) it would.
UPDATE_SECRET = """
import sys
from zenml.client import Client
Client().update_secret(sys.argv[1], add_or_update_values={sys.argv[2]: sys.argv[3]})
"""


def set_secret_value(remote: Remote, home: Path, key: str, value: str) -> None:
    env = remote.env(home)
    proc = subprocess.run([sys.executable, "-c", UPDATE_SECRET, f"{STACK}-mlflow", key, value], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_wrong_password_in_the_stacks_secret_names_the_server_and_the_secret(trained, remote, tmp_path):
    """The CLI's own login is right; the stack's tracker logs in with a wrong password in its secret.

    ZenML fails the first tracked step while preparing it and records no error for it, so the
    cause comes from the step's own exception (the local orchestrator passes it on).
    """
    before = version_count(remote)
    set_secret_value(remote, tmp_path / "admin", "password", "not-the-password")
    try:
        done = run(trained["env"], "train", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL, "--json")
    finally:
        set_secret_value(remote, tmp_path / "admin", "password", ADMIN_PASSWORD)
    assert done.returncode == 1, done.stderr[-3000:]
    line = error_line(done)
    assert line.startswith("error: step ") and remote.mlflow.url in line and "401 Unauthorized" in line, line
    assert f"ZenML secret '{STACK}-mlflow'" in line and "not-the-password" not in done.stderr + done.stdout, line
    assert "--debug" not in line  # a named cause, not a bug
    assert version_count(remote) == before


def test_a_user_without_permission_is_told_which_permission(trained, remote, tmp_path):
    """A login that works but may not read the experiment: a 403 that names the user, not the password."""
    import requests

    created = requests.post(f"{remote.mlflow.url}/api/2.0/mlflow/users/create", auth=(ADMIN, ADMIN_PASSWORD),
                            json={"username": "reader", "password": "reader-password"}, timeout=60)
    assert created.status_code == 200, created.text
    env = remote.env(tmp_path / "home", credentials=("reader", "reader-password"))
    done = run(env, "train", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL, "--json")
    assert done.returncode == 1, done.stderr[-3000:]
    line = error_line(done)
    assert remote.mlflow.url in line and "user 'reader' lacks permission on the experiment" in line, line
    assert "403 Forbidden" in line and "PASSWORD" not in line, line


def test_registration_notices_and_library_info_lines_stay_off_stderr(trained):
    """MLflow's "Successfully registered model" and INFO lines are not what `train` shows (issue 31)."""
    # `trained` ran `train` on the stack; its stderr is what a user saw.
    stderr = trained["train_stderr"]
    for noise in ("Successfully registered model", "Created version '", " INFO mlflow", "Waiting up to", "Downloading artifacts"):
        assert noise not in stderr, (noise, stderr[-3000:])


@pytest.mark.parametrize("reader", ["head -1", "head -c 0"])
def test_a_reader_that_leaves_early_is_quiet(trained, reader):
    """`models | head -1`, as in a shell; `head -c 0` leaves before the first write, so the pipe surely breaks."""
    script = f"{SENTIBRIDGE} models | {reader} >/dev/null; echo \"status=${{PIPESTATUS[0]}}\" >&2"
    done = subprocess.run(["bash", "-c", script], cwd=REPO, env=trained["env"], capture_output=True, text=True, timeout=300)
    status = done.stderr.strip().splitlines()[-1]
    assert status in ("status=0", "status=141"), done.stderr[-3000:]
    assert done.stderr.strip() == status, done.stderr[-3000:]  # nothing else on stderr: no "error: Broken pipe"
    if reader == "head -c 0":
        assert status == "status=141", done.stderr[-3000:]  # a closed pipe ends like any Unix tool's


class _Failing(http.server.BaseHTTPRequestHandler):
    """A tracking server that is up but broken: 500 to every request."""

    def _fail(self) -> None:
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"internal error")

    do_GET = do_POST = do_PATCH = do_DELETE = _fail

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _outage(env: dict[str, str], tmp_path: Path, commands: list[str]) -> dict[str, subprocess.CompletedProcess]:
    """Runs the named commands at once against a broken tracking server."""
    (tmp_path / "in.csv").write_text("text\ngood\n", encoding="utf-8")
    argv = {
        "train": ["train", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL, "--json"],
        "retrain": ["retrain", "--if-data-changed", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL, "--json"],
        "models": ["models", "--json"],
        "promote": ["promote", "1", "--reason", "outage test", "--json"],
        "rollback": ["rollback", "--json"],
        "predict": ["predict", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv"), "--json"],
    }
    started = {name: start(env, *argv[name]) for name in commands}
    return {name: finish(proc) for name, proc in started.items()}


def test_a_tracking_server_answering_500_is_an_error_not_no_champion(remote, failing_server, tmp_path):
    env = remote.env(tmp_path / "home", MLFLOW_TRACKING_URI=failing_server)
    for command, proc in _outage(env, tmp_path, ["train", "retrain", "models"]).items():
        assert proc.returncode == 1, (command, proc.stderr[-3000:])
        line = error_line(proc)
        assert failing_server in line and "500" in line, line
        assert last_json(proc) == {"ok": False, "error": line.removeprefix("error: ")}
        assert "retrain:" not in proc.stdout and "trained" not in proc.stdout


def test_stopping_the_tracking_server_mid_session_fails_every_command(trained, remote, tmp_path):
    """Last in this file: it stops MLflow (the `remote` fixture starts it again for later tests)."""
    before = version_count(remote)
    remote.mlflow.stop()
    started = time.perf_counter()
    results = _outage(trained["env"], tmp_path, ["train", "retrain", "models", "promote", "rollback", "predict"])
    seconds = time.perf_counter() - started
    for command, proc in results.items():
        assert proc.returncode == 1, (command, proc.stderr[-3000:])
        line = error_line(proc)
        assert remote.mlflow.url in line and "unreachable" in line, (command, line)
        assert last_json(proc) == {"ok": False, "error": line.removeprefix("error: ")}
    assert "retrain:" not in results["retrain"].stdout  # neither "running: no champion yet" nor "skipped"
    # MLflow's retries as the CLI sets them: seconds, not the minutes of MLflow's own defaults.
    assert seconds < 240, f"six commands against a stopped server took {seconds:.0f} s"
    assert version_count(remote) == before
