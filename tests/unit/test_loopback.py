"""The test helper that waits for servers on loopback fails fast and says why."""

import subprocess
import sys

import pytest

from tests.loopback import free_port, wait_for_http


def test_a_server_that_exits_fails_at_once_with_its_log():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with pytest.raises(RuntimeError, match="exited while starting:\nboom"):
        wait_for_http(f"http://127.0.0.1:{free_port()}/health", dead, "server", 60, lambda: "boom")


def test_a_server_that_never_answers_times_out():
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(RuntimeError, match="did not answer .*/health within 0 s"):
            wait_for_http(f"http://127.0.0.1:{free_port()}/health", silent, "server", 0.3, interval_s=0.1)
    finally:
        silent.kill()
        silent.wait()


def test_a_server_that_answers_returns():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/", server, "http.server", 30, interval_s=0.1)
    finally:
        server.kill()
        server.wait()
