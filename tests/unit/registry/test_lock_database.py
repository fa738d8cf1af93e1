"""The database promotion lock (``registry.lock_url``): SQLite on a shared file and Postgres
advisory locks. One holder at a time, a one-line timeout naming the URL and the seconds, and a
holder killed with SIGKILL blocks nobody."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sentibridge.config_loading import load_settings
from sentibridge.errors import ConfigError, SentibridgeError
from sentibridge.registry.lock import LockTimeout, PromotionLock, promotion_lock
from tests.loopback import free_port

_HOLD = """
import sys, time
from sentibridge.registry.lock import promotion_lock
with promotion_lock(sys.argv[1], sys.argv[2], timeout_s=60):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(url: str, name: str = "clf") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, url, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line == "held", proc.stderr.read()[-2000:]
    return proc


def _killed_holder_frees_the_lock(url: str, shown: str, other_models_blocked: bool) -> None:
    holder = _holder(url)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            with promotion_lock(url, "clf", timeout_s=0.5):
                pytest.fail("entered a lock another process holds")
        assert time.monotonic() - started >= 0.5
        assert str(info.value) == (
            f"another promotion of 'clf' holds the lock at {shown}; gave up after 0.5 s (registry.lock_timeout_s)"
        )
        if other_models_blocked:  # SQLite locks the whole file
            with pytest.raises(LockTimeout):
                with promotion_lock(url, "other", timeout_s=0.3):
                    pass
        else:
            with promotion_lock(url, "other", timeout_s=0.3):
                pass
        os.kill(holder.pid, signal.SIGKILL)  # no finally, no atexit: only the OS (or server) can free it
        holder.wait(timeout=30)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with promotion_lock(url, "clf", timeout_s=10):
        pass


def test_sqlite_lock_times_out_with_one_line_and_dies_with_its_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared' / 'locks.db'}"
    (tmp_path / "shared").mkdir()
    _killed_holder_frees_the_lock(url, url, other_models_blocked=True)


def test_sqlite_lock_is_released_after_an_error_and_serialises_in_process(tmp_path: Path) -> None:
    lock = PromotionLock(f"sqlite:///{tmp_path / 'locks.db'}", 5)
    with pytest.raises(RuntimeError):
        with lock.hold("clf"):
            raise RuntimeError("boom")
    with lock.hold("clf"):
        with pytest.raises(LockTimeout):  # a second connection, even in the same process, waits
            with promotion_lock(lock.where, "clf", timeout_s=0.2):
                pass
    with lock.hold("clf"):
        pass


def test_an_unreachable_lock_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'locks.db'}"
    with pytest.raises(SentibridgeError, match=r"^cannot open the promotion lock sqlite:///.*/no/such/locks.db: "):
        with promotion_lock(url, "clf", timeout_s=1):
            pass


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url", "not a SQLAlchemy URL"),
        ("oracle://host/db", "no lock for 'oracle' (use one of: mariadb, mysql, postgresql, sqlite)"),
    ],
)
def test_lock_url_is_checked_with_the_config(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(overrides=[f"registry.lock_url={url}"])


def test_every_checked_backend_has_a_lock_and_the_config_does_not_import_the_lock() -> None:
    from sentibridge.registry import lock
    from sentibridge.registry.lock_url import LOCK_BACKENDS

    assert set(lock._BACKENDS) == set(LOCK_BACKENDS)
    # config -> lock -> config was a cycle; now the lock reads the config and nothing reads back.
    code = "import sys, sentibridge.config; assert 'sentibridge.registry.lock' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})


def test_the_lock_follows_the_config(tmp_path: Path) -> None:
    default = load_settings()
    assert PromotionLock.of(default.registry, tmp_path) == PromotionLock(tmp_path / "locks", 600.0)
    shared = load_settings(overrides=["registry.lock_url=postgresql+psycopg://ci:secret@db:5432/locks", "registry.lock_timeout_s=30"])
    lock = PromotionLock.of(shared.registry, tmp_path)
    assert lock == PromotionLock("postgresql+psycopg://ci:secret@db:5432/locks", 30.0)
    with pytest.raises(ConfigError, match="lock_timeout_s"):
        load_settings(overrides=["registry.lock_timeout_s=0"])


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway Postgres server (skipped where no ``initdb``/``pg_ctl`` or no psycopg)."""
    pytest.importorskip("psycopg")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no Postgres server binaries (initdb, pg_ctl) on PATH")
    # Postgres refuses to run as root; run it as the `postgres` user where we are root, in a
    # folder that user can reach (pytest's tmp folders are private to us).
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="sentibridge-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "sentibridge"], check=True, capture_output=True, timeout=120)
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(root / "log"),
         "-o", f"-p {port} -h 127.0.0.1 -k {root}", "start"],
        check=True, capture_output=True, timeout=120,
    )
    try:
        yield f"postgresql+psycopg://sentibridge:secret@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_postgres_advisory_lock_times_out_and_dies_with_its_holder(postgres_url: str) -> None:
    shown = postgres_url.replace(":secret@", ":***@")  # the password never reaches a message
    _killed_holder_frees_the_lock(postgres_url, shown, other_models_blocked=False)
