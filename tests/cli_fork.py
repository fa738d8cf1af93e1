"""`sentibridge` commands for tests, each one its own process forked from a warm interpreter.

A fresh `sentibridge` process spends 10-17 s of CPU importing torch, transformers, peft, ZenML and
MLflow before it does anything, and the suite runs about 80 commands. So each pytest worker
starts one interpreter that imports those modules once (and nothing more: no ZenML config is read,
no Python thread is started), and each command is a ``fork`` of it that runs ``sentibridge.cli.main``
with the command's own arguments, environment, working folder, stdout and stderr, exits as the
interpreter would (threads joined, atexit handlers run, output flushed; ``_shut_down``), and
gives its exit code: what the console script gives, without the imports.

``SENTIBRIDGE_TEST_FORK=0`` runs the console script instead. Tests about the process itself
(signals, pipes, commands running at the same time) start the console script themselves.

Run as ``python -m tests.cli_fork`` it is the server: one JSON request per line on stdin, one
JSON answer per line on stdout.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("sentibridge"))

#: What the commands import; importing them is the cost a fork saves.
PRELOAD = (
    "sentibridge.cli",
    "pipelines.run",
    "pipelines.sentibridge_pipeline",
    "sentibridge.registry.promotion",
    "sentibridge.inference.predict",
    "sentibridge.inference.files",
    "peft",
    # Imported lazily by the commands themselves (data validation, the data version, the local
    # MLflow store, ZenML's stack components): about 3 s of every tiny `train` before these.
    "great_expectations",
    "dvc.repo",
    "dvc.scm",
    "git",
    "mlflow.store.tracking.sqlalchemy_store",
    "zenml.integrations.mlflow.model_registries",
    "zenml.deployers",
    "zenml.log_stores",
)

#: Read at import by MLflow and ZenML, and set by ``cli.main`` and ``home.activate`` before their
#: imports: the server sets them first so that a forked command sees what a fresh one would.
IMPORT_TIME_ENV = {
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "ZENML_LOGGING_VERBOSITY": "WARN",
    "ZENML_ANALYTICS_OPT_IN": "false",
    "HF_HUB_OFFLINE": "1",
}

_server: subprocess.Popen | None = None
_lock = threading.Lock()


def run_sentibridge(
    args: list[str], *, env: dict[str, str], cwd: Path | str = REPO, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run `sentibridge <args>` as :func:`subprocess.run` with ``capture_output=True, text=True`` would."""
    command = [CONSOLE_SCRIPT, *args]
    if os.environ.get("SENTIBRIDGE_TEST_FORK") == "0":
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    with _lock, tempfile.TemporaryDirectory(prefix="sentibridge-cli-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        request = {"args": list(args), "env": env, "cwd": str(cwd), "timeout": timeout, "stdout": str(out), "stderr": str(err)}
        server = _started_server()
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(f"the sentibridge fork server exited ({server.wait()}); its log: {_log_path()}")
        answer = json.loads(line)
        stdout, stderr = (path.read_text(encoding="utf-8", errors="replace") if path.exists() else "" for path in (out, err))
    if answer["timed_out"]:
        raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
    return subprocess.CompletedProcess(command, answer["returncode"], stdout, stderr)


def _log_path() -> Path:
    return Path(tempfile.gettempdir()) / f"sentibridge-cli-fork-{os.getpid()}.log"


def _started_server() -> subprocess.Popen:
    """This worker's server, started (its imports done) on first use or after it died."""
    global _server
    if _server is not None and _server.poll() is None:
        return _server
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ZENML_"))}
    env.update(IMPORT_TIME_ENV)
    with open(_log_path(), "w", encoding="utf-8") as log:
        _server = subprocess.Popen([sys.executable, "-m", "tests.cli_fork"], cwd=REPO, env=env, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8")
    if _server.stdout.readline().strip() != "ready":
        _server.kill()
        raise RuntimeError(f"the sentibridge fork server did not start ({_server.wait()}); its log: {_log_path()}")
    atexit.register(_server.stdin.close)  # the server ends at end of input
    return _server


# --- the server -----------------------------------------------------------------------------


def _serve() -> None:
    import importlib

    # The answers get their own copy of stdout, and fd 1 goes to the log: what an import prints
    # (PySpark's pandas warning, through ZenML's console handler) must not end up in the answers.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    for name in PRELOAD:
        importlib.import_module(name)
    # A fork copies only the calling thread: a Python thread started by an import would be lost
    # in every command. (Native helper threads, jemalloc's and BLAS's, re-form through their
    # pthread_atfork handlers, as in every DataLoader worker forked after `import torch`.)
    if threading.active_count() != 1:
        raise RuntimeError(f"the imports started threads {threading.enumerate()}; forking would not be safe")
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()  # (fd 1 is the log) an import's buffered output, not the command's
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _command(request)  # never returns: the child exits from there
        replies.write(json.dumps(_wait(pid, request["timeout"])) + "\n")
        replies.flush()


def _wait(pid: int, timeout: float) -> dict:
    """The child's exit code as subprocess gives it (negative: killed by that signal)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": False}
        if time.monotonic() > deadline:
            os.killpg(pid, 9)
            os.waitpid(pid, 0)
            return {"returncode": -9, "timed_out": True}
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _command(request: dict) -> None:
    """In the forked child: become the command, run it, and exit as its process would."""
    os.setpgid(0, 0)  # its own group, so that a timeout also stops what it started
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = [CONSOLE_SCRIPT, *request["args"]]
    from sentibridge.cli import main

    try:
        code = main()
    except SystemExit as exc:  # argparse's usage errors, and main's own exits
        code = exc.code
    except BaseException:  # as an uncaught exception ends a process: its traceback, exit 1
        traceback.print_exc()
        code = 1
    os._exit(_shut_down(code))


def _shut_down(code: object) -> int:
    """The exit status, after what the interpreter's exit does that a command can observe.

    In the interpreter's order: wait for non-daemon threads, run atexit handlers, flush output.
    Not the rest: tearing down every module of the inherited torch, ZenML and MLflow writes to
    nearly every page the child shares with the server (reference counts), which copies them
    all, about 3 s per command on these 2 cores.
    """
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_Finalize calls first
    atexit._run_exitfuncs()
    if code is None or isinstance(code, int):
        status = code or 0
    else:  # SystemExit("message"): printed to stderr, exit 1, as Python does
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed by the command
            pass
    return status


if __name__ == "__main__":
    os.environ.update(IMPORT_TIME_ENV)
    _serve()
