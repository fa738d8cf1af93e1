"""Integration fixtures: the `make run` model, trained once per session and shared."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env
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


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tiny_gemma_config, gemma_tokenizer) -> Path:
    """A tiny Gemma-3 with the real tokenizer, saved as a local base model (``model.base=<path>``).

    For integration tests about the stack, the servers or the CLI rather than the model: the whole
    pipeline runs as with Gemma-3-270M, only every forward pass is about a thousand times cheaper.
    """
    import torch
    from transformers import Gemma3ForCausalLM

    folder = tmp_path_factory.mktemp("tiny_base")
    torch.manual_seed(0)
    Gemma3ForCausalLM(tiny_gemma_config).save_pretrained(folder, safe_serialization=True)
    gemma_tokenizer.save_pretrained(folder)
    return folder
