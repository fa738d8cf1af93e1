"""Servers on loopback for tests: a free port, waiting until a server's URL answers, a server
subprocess, and a real `mlflow server` with or without basic auth."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(
    url: str,
    process: subprocess.Popen,
    name: str,
    timeout_s: float,
    log: Callable[[], str] = lambda: "",
    interval_s: float = 1.0,
) -> None:
    """Return once ``url`` answers 200; raise with the server's ``log`` if ``process`` exits first
    or ``timeout_s`` passes. Servers on 2 cores take up to minutes to start, so poll, not sleep."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited while starting:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:  # refused while starting; urllib's URLError is an OSError too
            pass
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{name} did not answer {url} within {timeout_s:.0f} s:\n{log()}")
        time.sleep(interval_s)


@dataclass
class Server:
    """One server subprocess: started in its own process group so that its workers stop with it."""

    name: str
    command: list[str]
    port: int
    health: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            self.command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
            cwd=self.log.parent, start_new_session=True,
        )
        handle.close()

    def wait(self, timeout_s: float = 240.0) -> None:
        assert self.process is not None, f"{self.name} was never started"
        wait_for_http(self.url + self.health, self.process, self.name, timeout_s, self.tail)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if not self.running():
            return
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else "(no log)"


AUTH_INI = """[mlflow]
default_permission = NO_PERMISSIONS
database_uri = sqlite:///{db}
admin_username = {admin}
admin_password = {password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
auth_cache_ttl_seconds = 60
"""


def mlflow_server(root: Path, auth: tuple[str, str] | None = None) -> Server:
    """A real `mlflow server` on a free port, its stores under ``root`` (not started).

    ``auth`` (admin, password): ``--app-name basic-auth`` with nothing allowed by default, and
    MLflow's own cache of successful password checks on (``auth_cache_ttl_seconds``): without it
    every request re-hashes the password, the bulk of a train's time against the server on two cores.
    A wrong password is never cached, so the tests of refused logins are unchanged.
    """
    root.mkdir(parents=True, exist_ok=True)
    # Job execution (MLflow 3's GenAI jobs) starts a job runner and three huey consumers beside
    # each server, which poll for the whole session; sentibridge submits no jobs.
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [str(BIN / "mlflow"), "server"]
    if auth is not None:
        ini = root / "basic_auth.ini"
        ini.write_text(AUTH_INI.format(db=root / "auth.db", admin=auth[0], password=auth[1]))
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_FLASK_SERVER_SECRET_KEY="tests-only")
        command += ["--app-name", "basic-auth"]
    port = free_port()
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    name = "mlflow server (basic-auth)" if auth else "mlflow server"
    return Server(name, command, port, "/health", root / "server.log", env=env)
