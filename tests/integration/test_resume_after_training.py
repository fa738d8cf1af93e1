"""A run cut off after its training (here, in evaluation) restores the training at its end when rerun.

The train step keeps its final checkpoint until ``register`` has registered the model, so a whole
training is not repeated because a later step was interrupted (a session's end, a preempted pod).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, TINY_MODEL, TINY_TRAIN, cli_env
from tests.integration.test_validate_cli import last_json, run_cli
from tests.interruption import signal_when

pytestmark = pytest.mark.integration

STEPS = 2  # TINY_TRAIN's train.max_steps
ARGS = ["train", "--config", "configs/default.yaml", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL, "--json"]


def kill_in_evaluation(home: Path) -> None:
    """Start a run and SIGKILL it once evaluation scores rows (its progress bar follows training's)."""
    log = home.parent / "killed.log"

    def evaluating() -> bool:
        text = log.read_text(errors="replace")
        return "train:" in text and "score:" in text.rsplit("train:", 1)[1]

    signal_when(ARGS, cli_env(home), evaluating, signal.SIGKILL, log, what="evaluation")


def test_a_run_killed_in_evaluation_restores_its_training_and_releases_it_once_registered(tmp_path):
    home = tmp_path / "home"
    kill_in_evaluation(home)
    left = sorted(path.name for path in (home / "runs").iterdir())
    assert len(left) == 1
    assert [p.name for p in (home / "runs" / left[0]).glob("checkpoint-*")] == [f"checkpoint-{STEPS}"]

    proc = run_cli(home, *ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc)
    assert result["train"]["run_key"] == left[0]
    assert result["train"]["resumed_from"] == result["train"]["steps"] == STEPS  # no step trained again
    assert result["model_version"] == "1"  # the killed run registered nothing
    assert not list((home / "runs").iterdir())  # registered: the checkpoint is released
