"""`train --run-config` and `--data-rev` in the CLI, with the runner replaced by fakes: a run
config with a schedule schedules instead of training, a bad one fails before ZenML starts, and
`--data-rev` hands the revision's copy and version to the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import run
from sentibridge import cli
from sentibridge.config import Settings
from sentibridge.data.version import DataVersion
from sentibridge.errors import ConfigError
from tests.conftest import REPO

KUBERNETES = REPO / "configs" / "stacks" / "kubernetes.yaml"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    for var in ("SENTIBRIDGE_DEBUG", "SENTIBRIDGE_STACK", "MLFLOW_TRACKING_URI", "ZENML_CONFIG_PATH", "ZENML_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SENTIBRIDGE_HOME", str(tmp_path / "home"))


def test_the_kubernetes_run_config_carries_its_cron(tmp_path: Path) -> None:
    assert run.run_config_cron(KUBERNETES) == "0 3 * * 1"
    once = tmp_path / "once.yaml"
    once.write_text("steps:\n  train:\n    step_operator: gpu\n")
    assert run.run_config_cron(once) is None


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "run config file not found: "),
        ("steps: [", "cannot parse run config "),
        ("- a list\n", "must be a mapping"),
        ("schedule:\n  start_time: 2026-01-01\n", "a schedule needs a cron_expression"),
        ("schedule:\n  cron_expression: '61 3 * * 1'\n", "invalid cron expression '61 3 * * 1'"),
    ],
)
def test_a_bad_run_config_is_a_config_error(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "run.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("*", r"\*")):
        run.run_config_cron(path)


def test_train_with_a_scheduled_run_config_schedules_and_trains_nothing(monkeypatch, capsys) -> None:
    scheduled = []
    monkeypatch.setattr(run, "schedule", lambda settings, zenml_schedule, run_config=None: scheduled.append((zenml_schedule, run_config)))
    monkeypatch.setattr(run, "train", lambda *args, **kwargs: pytest.fail("must not train now"))
    assert cli.main(["train", "--run-config", str(KUBERNETES), "--json"]) == 0
    assert scheduled == [(None, KUBERNETES)]
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == {"ok": True, "scheduled": "0 3 * * 1", "run_config": str(KUBERNETES)}


def test_train_passes_an_unscheduled_run_config_to_the_runner(monkeypatch, tmp_path) -> None:
    once = tmp_path / "once.yaml"
    once.write_text("steps:\n  train:\n    step_operator: gpu\n")
    passed = []
    monkeypatch.setattr(run, "train", lambda settings, version=None, run_config=None: passed.append(run_config) or 1 / 0)
    assert cli.main(["train", "--run-config", str(once)]) == 1  # the fake fails after recording its arguments
    assert passed == [once]


def test_data_rev_hands_the_copy_and_its_version_to_the_runner(monkeypatch, tmp_path) -> None:
    version = DataVersion(md5="abc.dir", source="dvc", record="f00:data/sample")
    calls = []

    def at_revision(settings: Settings, rev: str):
        calls.append((settings.data.path, rev))
        moved = settings.model_copy(deep=True)
        moved.data.path = str(tmp_path / "copy")
        return moved, version

    received = []
    monkeypatch.setattr(run, "at_revision", at_revision)
    monkeypatch.setattr(run, "train", lambda settings, version=None, run_config=None: received.append((settings.data.path, version)) or 1 / 0)
    assert cli.main(["train", "--data", "data/sample", "--data-rev", "v1"]) == 1
    assert calls == [("data/sample", "v1")] and received == [(str(tmp_path / "copy"), version)]
    received.clear()
    cli.main(["train", "--data", "data/sample"])  # without --data-rev the data is read from disk
    assert received == [("data/sample", None)]
