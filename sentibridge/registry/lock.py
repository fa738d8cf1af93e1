"""The promotion lock: one promotion of a registered model at a time.

Two kinds, chosen by ``registry.lock_url``:

- unset: a file lock in the home's ``locks/`` folder (``filelock``). It covers the processes
  that share that home (one machine, or a home on a shared filesystem).
- a SQLAlchemy URL: a lock held by a database that every pipeline reaches, so pipelines on
  different machines (two Kubernetes pods with different homes) are serialised too.

  ``sqlite:////shared/path/locks.db``: an ``EXCLUSIVE`` transaction on that file. SQLite's
  lock is an OS file lock, so the OS drops it when the holding process dies (kill -9 too).
  One file serialises all models.
  ``postgresql://...``: ``pg_try_advisory_lock(key)`` per model, ``mysql+pymysql://...``:
  ``GET_LOCK(name, 0)``. Both are session locks that the server drops when the holder's
  connection closes, which includes the holder's process or pod dying.

No lease rows and no expiry: every lock here dies with its holder, so a crashed holder never
blocks the next one and a slow but live holder is never robbed. Waiting is bounded by
``registry.lock_timeout_s``; a timeout is one line naming the lock and the seconds waited.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentibridge.config import RegistryConfig
from sentibridge.errors import SentibridgeError
from sentibridge.registry.lock_url import check_lock_url, shown_url

#: Seconds between two attempts on a database lock (each attempt returns at once).
_POLL_S = 0.2


class LockTimeout(SentibridgeError):
    """Another promotion held the lock for longer than ``registry.lock_timeout_s``."""


@dataclass(frozen=True)
class PromotionLock:
    """Where promotions are serialised: a folder (file locks) or a SQLAlchemy URL."""

    where: Path | str
    timeout_s: float

    @classmethod
    def of(cls, registry_cfg: RegistryConfig, home_root: Path) -> "PromotionLock":
        """``registry.lock_url`` when set, else the home's ``locks/`` folder."""
        return cls(registry_cfg.lock_url or home_root / "locks", registry_cfg.lock_timeout_s)

    def hold(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Hold the lock for registered model ``name`` (raises ``LockTimeout``)."""
        return promotion_lock(self.where, name, self.timeout_s)


def promotion_lock(where: Path | str, name: str, timeout_s: float) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock per registered model: a file in folder ``where``, or on database URL ``where``."""
    if isinstance(where, Path):
        return _file_lock(where, name, timeout_s)
    return _database_lock(where, name, timeout_s)


@contextlib.contextmanager
def _file_lock(folder: Path, name: str, timeout_s: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f"{name}.lock", timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(
            f"another promotion of '{name}' holds {lock.lock_file}; gave up after {timeout_s:g} s (registry.lock_timeout_s)"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _key(name: str) -> tuple[int, str]:
    """A signed 64-bit key (Postgres) and a name of at most 64 characters (MySQL) for ``name``."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True), f"sentibridge:{digest.hex()[:48]}"


def _sqlite_try(connection: Any, name: str) -> bool:
    from sqlalchemy.exc import OperationalError

    try:
        connection.exec_driver_sql("BEGIN EXCLUSIVE")
    except OperationalError as exc:
        if "locked" in str(exc.orig) or "busy" in str(exc.orig):
            return False
        raise
    return True


def _sqlite_release(connection: Any, name: str) -> None:
    connection.exec_driver_sql("ROLLBACK")  # nothing was written: ending the transaction frees the lock


def _postgres_try(connection: Any, name: str) -> bool:
    from sqlalchemy import text

    return bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _key(name)[0]}).scalar())


def _postgres_release(connection: Any, name: str) -> None:
    from sqlalchemy import text

    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _key(name)[0]})


def _mysql_try(connection: Any, name: str) -> bool:
    from sqlalchemy import text

    return connection.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": _key(name)[1]}).scalar() == 1


def _mysql_release(connection: Any, name: str) -> None:
    from sqlalchemy import text

    connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _key(name)[1]})


#: backend -> (try to take the lock without waiting, release it), on a SQLAlchemy connection;
#: one for each of ``lock_url.LOCK_BACKENDS``.
_BACKENDS = {
    "sqlite": (_sqlite_try, _sqlite_release),
    "postgresql": (_postgres_try, _postgres_release),
    "mysql": (_mysql_try, _mysql_release),
    "mariadb": (_mysql_try, _mysql_release),
}


@contextlib.contextmanager
def _database_lock(url: str, name: str, timeout_s: float) -> Iterator[None]:
    """Hold the database lock on a connection of our own for the whole block."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    check_lock_url(url)
    backend = make_url(url).get_backend_name()
    try_lock, release = _BACKENDS[backend]
    if backend == "sqlite":
        # No busy wait inside the driver (we poll) and no implicit BEGIN (we issue our own).
        options: dict[str, Any] = {"connect_args": {"timeout": 0, "isolation_level": None}}
    else:
        # Autocommit: a session lock must not keep a transaction open that the server may time out.
        options = {"isolation_level": "AUTOCOMMIT"}
    try:
        # NullPool: closing the connection really closes it, which is what frees a session lock.
        engine = create_engine(url, poolclass=NullPool, **options)
        connection = engine.connect()
    except (SQLAlchemyError, ImportError) as exc:  # unreachable server, missing driver, bad path
        raise SentibridgeError(f"cannot open the promotion lock {shown_url(url)}: {_first_line(exc)}") from None
    try:
        deadline = time.monotonic() + timeout_s
        while not try_lock(connection, name):
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"another promotion of '{name}' holds the lock at {shown_url(url)}; "
                    f"gave up after {timeout_s:g} s (registry.lock_timeout_s)"
                )
            time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0.0)))
        try:
            yield
        finally:
            release(connection, name)
    finally:
        connection.close()
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
