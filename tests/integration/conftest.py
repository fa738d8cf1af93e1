"""Integration fixtures: the `make run` model, trained once per session and shared."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_BASE, cli_env
from tests.integration.test_validate_cli import SENTIBRIDGE, last_json

#: About all of the sample's test rows per language: the gate's noise is what a user of the sample sees.
SAMPLE_TEST_ROWS = ["--set", "eval.max_rows_per_language=15"]


@dataclass
class TrainedHome:
    """A project home holding v1, trained with the default config; ``result`` is its `train --json`."""

    home: Path
    result: dict

    def cli(self, *args: str) -> dict:
        """`sentibridge <args> --json` in this home: its last JSON line, plus ``stdout``."""
        proc = subprocess.run([*SENTIBRIDGE, *args, "--json"], cwd=REPO, env=cli_env(self.home), capture_output=True,
                              text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {**last_json(proc), "stdout": proc.stdout}


@pytest.fixture(scope="session")
def default_model(tmp_path_factory) -> TrainedHome:
    """The model `make run` trains (the default config on the sample data, a full epoch: minutes), once."""
    trained = TrainedHome(tmp_path_factory.mktemp("default_model") / "home", {})
    trained.result = trained.cli("train", "--config", "configs/default.yaml", *SAMPLE_TEST_ROWS)
    return trained


@pytest.fixture(scope="session", autouse=True)
def tiny_base(tiny_gemma_config, gemma_tokenizer) -> Path:
    """Build ``TINY_BASE`` once per machine (``TINY_MODEL`` points the CLI at it)."""
    import shutil
    import tempfile

    import torch
    from filelock import FileLock
    from transformers import Gemma3ForCausalLM

    marker = TINY_BASE / "tests_tiny_base.json"
    TINY_BASE.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(TINY_BASE) + ".lock"):  # pytest-xdist workers build it once between them
        if marker.is_file():
            return TINY_BASE
        tmp = Path(tempfile.mkdtemp(dir=TINY_BASE.parent, prefix=".tiny-"))
        torch.manual_seed(0)
        Gemma3ForCausalLM(tiny_gemma_config).save_pretrained(tmp, safe_serialization=True)
        gemma_tokenizer.save_pretrained(tmp)
        (tmp / marker.name).write_text('{"seed": 0}', encoding="utf-8")
        shutil.rmtree(TINY_BASE, ignore_errors=True)
        tmp.rename(TINY_BASE)
    return TINY_BASE
