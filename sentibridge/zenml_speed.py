"""One ZenML cost that is ours to avoid: scanning every installed distribution per step.

ZenML 0.98 resolves the source of each step output's materializer and data type through
``importlib.metadata.packages_distributions()``, which reads the metadata of every installed
distribution (~1.4 s with this project's ~300 packages) and is called about once per step:
a third of a small pipeline run on 2 cores. The answer cannot change while a run is in progress
short of installing packages mid-run, so it is computed once per process.
"""

from __future__ import annotations

import functools
import importlib.metadata


def memoise_package_lookup() -> None:
    """Make ``importlib.metadata.packages_distributions`` compute its mapping once (idempotent)."""
    current = importlib.metadata.packages_distributions
    if getattr(current, "sentibridge_memoised", False):
        return
    cached = functools.cache(current)
    cached.sentibridge_memoised = True  # type: ignore[attr-defined]
    importlib.metadata.packages_distributions = cached
