"""The experiment's MLflow parent run when the runs folder was resumed from another home."""

from __future__ import annotations

import mlflow

from sentibridge.tracking import log_experiment


def test_runs_from_another_tracking_store_are_left_out_and_a_missing_parent_is_made_anew(tmp_path):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("sentibridge", artifact_location=(tmp_path / "artifacts").as_uri())
    here = client.create_run(experiment_id).info.run_id
    elsewhere = "244b402fd37e4741a92d8a6fee848574"  # logged by another home's MLflow
    parent = log_experiment(client, "sentibridge", "levers", elsewhere, [elsewhere, here], {"f1_reference": 0.66}, [])
    assert parent != elsewhere
    assert client.get_run(here).data.tags["mlflow.parentRunId"] == parent
    assert client.get_run(parent).data.metrics == {"f1_reference": 0.66}
    assert log_experiment(client, "sentibridge", "levers", parent, [here], {}, []) == parent  # a resume here reuses it
