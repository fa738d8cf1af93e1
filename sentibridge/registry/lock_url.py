"""``registry.lock_url``: which databases can hold the promotion lock, and a URL fit to show.

Apart from ``registry/lock.py`` so that the config checks a URL without importing the lock
(the lock reads the config).
"""

from __future__ import annotations

from sentibridge.errors import ConfigError

#: The SQLAlchemy backends with a promotion lock (``registry/lock.py`` has one for each).
LOCK_BACKENDS = ("mariadb", "mysql", "postgresql", "sqlite")


def check_lock_url(url: str) -> str:
    """``url`` if SQLAlchemy can parse it and it names a backend with a lock here, else ``ConfigError``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise ConfigError(f"registry.lock_url: not a SQLAlchemy URL: {url!r}") from None
    if backend not in LOCK_BACKENDS:
        raise ConfigError(f"registry.lock_url: no lock for '{backend}' (use one of: {', '.join(sorted(LOCK_BACKENDS))})")
    return url


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
