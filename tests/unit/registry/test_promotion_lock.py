"""The promotion lock: one holder per model name, across processes, and a one-line timeout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sentibridge.errors import SentibridgeError
from sentibridge.registry.lock import promotion_lock

_HOLD = """
import sys, time
from pathlib import Path
from sentibridge.registry.lock import promotion_lock
with promotion_lock(Path(sys.argv[1]), "clf", timeout_s=60):
    print("held", flush=True)
    time.sleep(30)
"""


def test_a_held_lock_times_out_with_one_line(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SentibridgeError) as info:
            with promotion_lock(tmp_path, "clf", timeout_s=0.3):
                pytest.fail("entered a lock another process holds")
        assert str(info.value) == (
            f"another promotion of 'clf' holds {tmp_path / 'clf.lock'}; gave up after 0.3 s (registry.lock_timeout_s)"
        )
        with promotion_lock(tmp_path, "other", timeout_s=0.3):  # another model is not blocked
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with promotion_lock(tmp_path, "clf", timeout_s=5):  # released when its holder dies
        pass


def test_the_lock_is_released_after_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with promotion_lock(tmp_path, "clf", timeout_s=5):
            raise RuntimeError("boom")
    with promotion_lock(tmp_path / "new", "clf", timeout_s=0.3):  # creates its folder
        pass
    with promotion_lock(tmp_path, "clf", timeout_s=0.3):
        pass
