"""`sentibridge train --set train.processes=2` end to end: two gloo workers, one MLflow run, a registered model."""

from __future__ import annotations

import mlflow
import pytest

from tests.conftest import SAMPLE, TINY_MODEL, TINY_TRAIN
from tests.integration.test_validate_cli import last_json, run_cli

pytestmark = pytest.mark.integration


def test_two_process_train_registers_a_model_with_one_mlflow_run(home):
    proc = run_cli(
        home, "train", "--config", "configs/default.yaml", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL,
        "--set", "train.processes=2", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc)
    assert result["train"]["world_size"] == 2 and result["train"]["steps"] == 2
    assert result["registered_model"] == "sentibridge-sentiment" and result["model_version"] == "1"
    assert all(0.0 <= scores["f1"] <= 1.0 for scores in result["per_language"].values())

    mlflow.set_tracking_uri(result["tracking_uri"])
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("sentibridge")
    runs = client.search_runs([experiment.experiment_id])
    assert [run.info.run_id for run in runs] == [result["mlflow_run_id"]]  # the workers opened none
    losses = client.get_metric_history(result["mlflow_run_id"], "loss")
    assert sorted(m.step for m in losses) == [1, 2]  # one set of step metrics, from the main rank
    assert len(client.get_metric_history(result["mlflow_run_id"], "eval_loss")) == 1
