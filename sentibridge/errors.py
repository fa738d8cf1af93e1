"""User-facing errors, and how any failure becomes one line for the CLI.

``SentibridgeError`` and its subclasses are mistakes the user can fix; ``describe`` turns every
other exception (MLflow, the file system, a crashed step) into a one-line ``Failure`` as well, so
the CLI never has to print a traceback unless asked to (``--debug``).
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass


class SentibridgeError(Exception):
    """A mistake the user can fix (bad input, bad config); exit code 1."""

    exit_code = 1


class ConfigError(SentibridgeError):
    """An unknown key, a wrong type or an unreadable config file."""

    exit_code = 2


class DataError(SentibridgeError):
    """Input data that cannot be read, or fails validation."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that a command stops the same way (exit 143)."""


class StepFailed(Exception):
    """A pipeline step failed on something other than a user mistake in the data or config.

    ``detail`` is the step's own traceback as ZenML recorded it: the exception that escapes
    the orchestrator only says "failure in step(s)". ``known``: the cause is named (a server
    that refused the step's login, a missing bucket), so the CLI does not call it a bug.
    """

    def __init__(self, step: str, message: str, detail: str = "", known: bool = False) -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.detail = detail
        self.known = known


@dataclass(frozen=True)
class Failure:
    """What the CLI shows for an exception: one line, an exit code, and a traceback for --debug."""

    message: str
    exit_code: int
    traceback: str
    #: Neither a user mistake nor a known library failure: most likely a bug.
    unexpected: bool = False


def describe(exc: BaseException) -> Failure:
    """One line and an exit code (1 data or runtime, 2 usage or config) for any exception."""
    trace = "".join(traceback.format_exception(exc))
    if isinstance(exc, SentibridgeError):
        return Failure(str(exc), exc.exit_code, trace)
    if isinstance(exc, StepFailed):
        return Failure(str(exc), 1, exc.detail or trace, unexpected=not exc.known)
    # MLflow is only imported by commands that use it; without it no MlflowException can exist.
    mlflow_errors = sys.modules.get("mlflow.exceptions")
    if mlflow_errors is not None and isinstance(exc, mlflow_errors.MlflowException):
        uri = os.environ.get("MLFLOW_TRACKING_URI", "the default tracking URI")
        return Failure(tracking_server_failure(exc, uri) or f"MLflow ({uri}): {_first_line(exc.message)}", 1, trace)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        if exc.filename2 is not None:
            where = f"{where} -> {exc.filename2}"
        reason = exc.strerror or _first_line(str(exc)) or type(exc).__name__
        return Failure(f"{where}: {reason}" if where else reason, 1, trace)
    return Failure(f"{type(exc).__name__}: {_first_line(str(exc))}", 1, trace, unexpected=True)


#: What MLflow's REST endpoints act on, for a 403's message: (path fragment, what it is).
_RESOURCES = (
    ("/registered-models/", "registered model"),
    ("/model-versions/", "registered model"),
    ("/logged-models", "logged model"),
    ("/experiments/", "experiment"),
    ("/runs/", "run"),
)
#: Where the CLI's own MLflow login comes from (a step's comes from its stack's tracker).
CLI_LOGIN = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def tracking_server_failure(
    exc: BaseException, uri: str, login: str = CLI_LOGIN, user: str | None = None, target: str = ""
) -> str | None:
    """One line for an MLflow request the tracking server never answered, answered 5xx or refused.

    None for every other MLflow error (a missing model, a bad parameter): those are answers.
    MLflow wraps the HTTP failure (after its own retries) in an ``MlflowException`` whose
    context is the ``requests`` error, so the kind of outage is read from the exception chain.
    ``login`` says where the credentials came from, ``user`` who logged in (default
    ``MLFLOW_TRACKING_USERNAME``), ``target`` what was asked for (e.g. "experiment 'x'").
    """
    import requests
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    code = getattr(exc, "error_code", None)
    if code == "UNAUTHENTICATED":  # who we are: a wrong or missing login
        return f"MLflow tracking server {uri} refused the login (401 Unauthorized): check {login}"
    if code == "PERMISSION_DENIED":  # logged in, but not allowed: an admin grants the permission
        user = user or os.environ.get("MLFLOW_TRACKING_USERNAME") or "the token's user"
        return (
            f"MLflow tracking server {uri}: user {user!r} lacks permission on {target or _resource(exc)} "
            "(403 Forbidden); a server admin grants it (docs: infrastructure, what the servers need)"
        )
    cause = next((e for e in _chain(exc) if isinstance(e, requests.RequestException)), None)
    retries = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    if isinstance(cause, requests.Timeout):
        timeout = MLFLOW_HTTP_REQUEST_TIMEOUT.get()
        return f"MLflow tracking server {uri} did not answer within {timeout} s (MLFLOW_HTTP_REQUEST_TIMEOUT)"
    if isinstance(cause, requests.exceptions.RetryError):  # 429/5xx until the retries ran out
        reason = getattr(cause.args[0], "reason", None) if cause.args else None
        return f"MLflow tracking server {uri} is failing: {reason or 'server errors'} ({retries} retries)"
    if isinstance(cause, requests.ConnectionError):
        errno_error = next((e for e in _chain(cause) if isinstance(e, OSError) and e.strerror), None)
        why = errno_error.strerror if errno_error is not None else "no connection"
        return f"MLflow tracking server {uri} is unreachable: {why} ({retries} retries); is it running?"
    return None


def _resource(exc: BaseException) -> str:
    """What a refused MLflow request acted on, from the endpoint its message names."""
    message = str(getattr(exc, "message", exc))
    endpoint = next((word for word in message.split() if word.startswith("/api/")), "")
    kind = next((name for fragment, name in _RESOURCES if fragment in endpoint), "the resource")
    return f"the {kind} ({endpoint})" if endpoint else kind


def _chain(exc: BaseException):
    """``exc``, its causes and contexts, and urllib3's ``reason`` of a failed retry, in order."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def reader_left() -> bool:
    """Whether stdout's reader closed the pipe (``sentibridge models | head -1``), and if so
    point stdout at /dev/null so that Python's own flush at exit stays quiet too.

    A broken pipe elsewhere (a server's socket) leaves stdout writable: that is a real error.
    """
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        closed = any(events & select.POLLERR for _, events in poller.poll(0))  # a pipe with no reader
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (a test's StringIO)
        return False
    if closed:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return closed

