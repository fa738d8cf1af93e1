"""The per-process memo of ``importlib.metadata.packages_distributions`` that ZenML calls per step."""

from __future__ import annotations

import importlib.metadata

from sentibridge.zenml_speed import memoise_package_lookup


def test_the_lookup_is_computed_once_and_answers_as_before(monkeypatch):
    calls = []

    def lookup():
        calls.append(1)
        return {"yaml": ["PyYAML"]}

    monkeypatch.setattr(importlib.metadata, "packages_distributions", lookup)
    memoise_package_lookup()
    memoise_package_lookup()  # idempotent: not wrapped twice
    assert importlib.metadata.packages_distributions() == {"yaml": ["PyYAML"]}
    assert importlib.metadata.packages_distributions().get("yaml") == ["PyYAML"]
    assert len(calls) == 1
