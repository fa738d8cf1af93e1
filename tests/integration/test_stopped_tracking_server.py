"""The local stack pointed at a tracking server that is down: one line, exit 1, nothing trained.

No ``SENTIBRIDGE_STACK``: the user only exported ``MLFLOW_TRACKING_URI``. The tracking server's
first request comes before any step, so the outage is reported as such (not as a stack or
"no champion" problem).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE, cli_env

pytestmark = pytest.mark.integration

SENTIBRIDGE = str(Path(sys.executable).with_name("sentibridge"))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [["train"], ["retrain", "--if-data-changed"]])
def test_stopped_tracking_server_is_one_line_and_exit_1(tmp_path, command):
    uri = f"http://127.0.0.1:{closed_port()}"
    env = {**cli_env(tmp_path / "home"), "MLFLOW_TRACKING_URI": uri}
    # The console script, not a fork of a warm interpreter (tests/cli_fork.py): where MLflow's
    # retry warnings go depends on what was imported first, and they must not reach stdout.
    proc = subprocess.run(
        [SENTIBRIDGE, *command, "--data", str(SAMPLE), "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert uri in errors[0] and "unreachable" in errors[0]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["ok"] is False and "unreachable" in last["error"]
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip().splitlines()[-1]]  # nothing ran or printed
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())
