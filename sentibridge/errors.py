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


class StepFailed(Exception):
    """A pipeline step raised something that is not a user mistake (a bug, the machine).

    ``detail`` is the step's own traceback as ZenML recorded it: the exception that escapes
    the orchestrator only says "failure in step(s)".
    """

    def __init__(self, step: str, message: str, detail: str = "") -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step = step
        self.detail = detail


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
        return Failure(str(exc), 1, exc.detail or trace, unexpected=True)
    # MLflow is only imported by commands that use it; without it no MlflowException can exist.
    mlflow_errors = sys.modules.get("mlflow.exceptions")
    if mlflow_errors is not None and isinstance(exc, mlflow_errors.MlflowException):
        uri = os.environ.get("MLFLOW_TRACKING_URI", "the default tracking URI")
        return Failure(f"MLflow ({uri}): {_first_line(exc.message)}", 1, trace)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        if exc.filename2 is not None:
            where = f"{where} -> {exc.filename2}"
        reason = exc.strerror or _first_line(str(exc)) or type(exc).__name__
        return Failure(f"{where}: {reason}" if where else reason, 1, trace)
    return Failure(f"{type(exc).__name__}: {_first_line(str(exc))}", 1, trace, unexpected=True)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
