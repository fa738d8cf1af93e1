"""Shared fixtures of the unit tests."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def import_bench() -> Callable[[str], ModuleType]:
    """Import a benchmark module of the ``bench`` package by name (``"umsab"`` is ``bench.umsab``)."""

    def load(name: str) -> ModuleType:
        return importlib.import_module(f"bench.{name}")

    return load
