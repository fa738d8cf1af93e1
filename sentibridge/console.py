"""The console of a command that runs ZenML: its output, not ZenML's banners and tracebacks.

ZenML prints banners and logs a step's traceback that the command re-raises as one ``error:``
line anyway; other libraries log at INFO. A command wraps the ZenML calls in ``quiet()``.
"""

from __future__ import annotations

import contextlib
import io
import logging

#: Top-level packages of this project: their warnings show even inside ``quiet()``.
OWN_PACKAGES = frozenset({"sentibridge", "steps", "pipelines", "materializers", "__main__"})


class _ConsoleFilter(logging.Filter):
    """Console records inside ``quiet()``: ours from WARNING, other libraries' from ERROR, ZenML's none."""

    def filter(self, record: logging.LogRecord) -> bool:
        package = record.name.split(".", 1)[0]
        if package == "zenml":  # banners, and step failures that the caller re-raises as one line
            return False
        return record.levelno >= (logging.WARNING if package in OWN_PACKAGES else logging.ERROR)


@contextlib.contextmanager
def quiet():
    """Quiet the console for a block that runs ZenML: its banners and re-raised step tracebacks.

    Only what reaches the console is filtered (ZenML's stored step logs keep everything), and
    warnings and errors of sentibridge's own loggers still show. ZenML's console handler writes
    to the original stdout, past ``redirect_stdout``, so a handler filter is what silences it.
    """
    console = [h for h in logging.root.handlers if isinstance(h, logging.StreamHandler)]
    only = _ConsoleFilter()
    for handler in console:
        handler.addFilter(only)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for handler in console:
            handler.removeFilter(only)
