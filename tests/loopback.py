"""Servers on loopback for tests: a free port, and waiting until a server's URL answers."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable


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
