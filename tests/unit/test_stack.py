"""Registering the stack: what ``ensure_stack`` refuses before it touches ZenML's store."""

from __future__ import annotations

import pytest

from sentibridge.errors import ConfigError
from sentibridge.home import Home
from sentibridge.stack import ensure_stack


def test_databricks_without_a_stack_is_one_config_line(home):
    # A plain http(s) URI gets a tracker of its own (tests/integration/test_plain_mlflow.py);
    # Databricks needs host and OAuth settings that only a registered stack carries. The home
    # fixture leaves SENTIBRIDGE_STACK unset.
    with pytest.raises(ConfigError, match="databricks needs a ZenML stack") as info:
        ensure_stack(Home(root=home, tracking_uri="databricks"))
    assert "\n" not in str(info.value)
