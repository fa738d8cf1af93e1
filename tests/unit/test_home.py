"""The project home: its locations from the environment, and ``activate`` re-pointing a copy
unless the user chose the ZenML config."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

from sentibridge.home import activate, resolve_home
from sentibridge.relocation import recorded_home
from tests.unit.test_relocation import make_zenml_home


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Every variable ``activate`` sets is restored after the test."""
    for var in ("MLFLOW_TRACKING_URI", "ZENML_CONFIG_PATH", "ZENML_STORE_URL", "SENTIBRIDGE_HOME"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)


def test_resolve_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTIBRIDGE_HOME", str(tmp_path / "h"))
    home = resolve_home()
    assert home.root == tmp_path / "h"
    assert home.tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow' / 'mlflow.db'}"


def test_activate_repoints_a_copy_unless_the_user_chose_the_zenml_config(tmp_path, monkeypatch):
    orig, copy = tmp_path / "orig", tmp_path / "copy"
    make_zenml_home(orig)
    shutil.copytree(orig, copy)
    monkeypatch.setenv("SENTIBRIDGE_HOME", str(copy))
    monkeypatch.setenv("ZENML_CONFIG_PATH", str(orig / "zenml"))  # the user's choice wins
    activate()
    assert recorded_home(yaml.safe_load((copy / "zenml" / "config.yaml").read_text())) == orig

    monkeypatch.delenv("ZENML_CONFIG_PATH")
    home = activate()
    assert recorded_home(yaml.safe_load((copy / "zenml" / "config.yaml").read_text())) == copy
    assert os.environ["ZENML_CONFIG_PATH"] == str(copy / "zenml")
    assert os.environ["MLFLOW_TRACKING_URI"] == home.local_tracking_uri
