"""The `make run` model, trained once per session and shared by the tests in this folder.

They live in one folder so that `make test`'s two workers run them on one worker
(tests/conftest.py: ``pytest_xdist_make_scheduler``) and the model is trained once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_fork import run_sentibridge
from tests.conftest import cli_env
from tests.integration.test_validate_cli import last_json

#: About all of the sample's test rows per language: the gate's noise is what a user of the sample sees.
SAMPLE_TEST_ROWS = ["--set", "eval.max_rows_per_language=15"]


@pytest.fixture(scope="session")
def tiny_base() -> None:
    """Nothing: this folder trains the real Gemma-3-270M.

    Overrides the integration tests' autouse build of the tiny base, which on this folder's
    worker would only wait, at the start of the session, for the other worker to build it.
    """


@dataclass
class TrainedHome:
    """A project home holding v1, trained with the default config; ``result`` is its `train --json`."""

    home: Path
    result: dict

    def cli(self, *args: str) -> dict:
        """`sentibridge <args> --json` in this home: its last JSON line, plus ``stdout``."""
        proc = run_sentibridge([*args, "--json"], env=cli_env(self.home), timeout=3600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {**last_json(proc), "stdout": proc.stdout}


@pytest.fixture(scope="session")
def default_model(tmp_path_factory) -> TrainedHome:
    """The model `make run` trains (the default config on the sample data, a full epoch: minutes), once."""
    trained = TrainedHome(tmp_path_factory.mktemp("default_model") / "home", {})
    trained.result = trained.cli("train", "--config", "configs/default.yaml", *SAMPLE_TEST_ROWS)
    return trained
