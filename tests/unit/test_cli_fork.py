"""The forked command's exit (``tests/cli_fork.py``): the status and steps a process exit has."""

from __future__ import annotations

import atexit
import threading

import pytest

from tests import cli_fork


@pytest.mark.parametrize(("code", "status", "printed"), [(None, 0, ""), (0, 0, ""), (2, 2, ""), ("bad input", 1, "bad input\n")])
def test_exit_status_threads_then_atexit_then_flush(monkeypatch, capsys, code, status, printed):
    calls: list[str] = []
    monkeypatch.setattr(threading, "_shutdown", lambda: calls.append("threads"))
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    assert cli_fork._shut_down(code) == status
    assert calls == ["threads", "atexit"]  # Py_Finalize's order: a thread may still register a handler
    assert capsys.readouterr().err == printed
