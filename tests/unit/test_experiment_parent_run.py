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


def test_a_report_in_a_home_that_never_ran_keeps_the_parent_runs_artifacts_in_the_home(home, tmp_path, monkeypatch):
    from dataclasses import replace

    from sentibridge.experiment.driver import run_experiment
    from tests.unit.experiment.test_grid import FakeRunner, two_by_two

    for var in ("MLFLOW_TRACKING_URI", "ZENML_CONFIG_PATH"):  # ``activate`` sets them: restored after the test
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    fake, out = FakeRunner(), tmp_path / "out"
    # The runs folder of a grid whose runs another home's MLflow logged.
    run_experiment(two_by_two(), out, effect=1.0,
                   runner=lambda settings: replace(fake(settings), mlflow_run_id="244b402fd37e4741a92d8a6fee848574"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    report = run_experiment(two_by_two(), out, effect=1.0, report_only=True)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    parent = client.get_run(report["mlflow_parent_run_id"])
    assert parent.info.artifact_uri.startswith((home / "mlflow").as_uri())
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} == {"report/report.json", "report/report.md"}
    assert not (tmp_path / "cwd" / "mlruns").exists()
