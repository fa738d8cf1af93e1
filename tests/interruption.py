"""A real `sentibridge` process stopped by a signal at a chosen moment, as a session's end, a
`kill` or a preempted pod stops one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO

SENTIBRIDGE = str(Path(sys.executable).with_name("sentibridge"))


def signal_when(
    args: list[str], env: dict[str, str], ready: Callable[[], bool], sig: signal.Signals,
    stdout: Path, stderr: Path | None = None, timeout: float = 600, what: str = "the moment",
) -> int:
    """Run `sentibridge <args>`, send ``sig`` to its process group once ``ready()``; its exit code.

    Output goes to ``stdout`` (and ``stderr``, else the same file), which ``ready`` may read. A
    process still running 120 s after the signal is killed, and the test fails.
    """
    with open(stdout, "w") as out, open(stderr or os.devnull, "w") as err:
        proc = subprocess.Popen([SENTIBRIDGE, *args], cwd=REPO, env=env, stdout=out,
                                stderr=err if stderr else subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                assert proc.poll() is None, f"it ended before {what}:\n{Path(stderr or stdout).read_text(errors='replace')[-3000:]}"
                assert time.monotonic() < deadline, f"{what} did not come in time"
                time.sleep(0.02)
            os.killpg(proc.pid, sig)
            return proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
