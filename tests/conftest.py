"""Shared fixtures: an isolated project home per test, and the UMSAB path (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UMSAB = (REPO.parent / "shared" / "data" / "umsab").resolve()
SAMPLE = REPO / "data" / "sample"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh SENTIBRIDGE_HOME with nothing of the user's MLflow or ZenML settings leaking in."""
    root = tmp_path / "home"
    monkeypatch.setenv("SENTIBRIDGE_HOME", str(root))
    for var in ("MLFLOW_TRACKING_URI", "ZENML_CONFIG_PATH", "ZENML_STORE_URL", "SENTIBRIDGE_STACK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZENML_ANALYTICS_OPT_IN", "false")
    return root


@pytest.fixture(scope="session")
def umsab() -> Path:
    if not (UMSAB / "README.md").is_file():
        pytest.skip(f"UMSAB not found at {UMSAB} (shared data absent on this machine)")
    return UMSAB


def cli_env(home: Path) -> dict[str, str]:
    """Environment for a `sentibridge` subprocess bound to ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ZENML_"))}
    env.update(SENTIBRIDGE_HOME=str(home), ZENML_ANALYTICS_OPT_IN="false", HF_HUB_OFFLINE="1")
    return env
