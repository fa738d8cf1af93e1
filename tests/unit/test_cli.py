"""The CLI without a ZenML store: parsing, rendering, the JSON last line, exit codes, and the
error boundary (the runner and registry calls are replaced by fakes)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pipelines import run
from sentibridge import cli
from sentibridge.errors import DataError, StepFailed
from sentibridge.registry.decision import Decision
from tests.conftest import SAMPLE

TRAIN_FIELDS = {
    "ok", "pipeline_run_id", "mlflow_run_id", "tracking_uri", "registered_model", "model_version", "per_language", "confusion",
    "f1_macro_avg", "promoted", "decision", "train", "eval", "augmentation", "calibration", "seconds",
}


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    """No debug switch, no stack, and every variable ``activate`` sets is restored after the test."""
    for var in ("SENTIBRIDGE_DEBUG", "SENTIBRIDGE_STACK", "MLFLOW_TRACKING_URI", "ZENML_CONFIG_PATH", "ZENML_STORE_URL"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("SENTIBRIDGE_HOME", str(tmp_path / "home"))


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def last_json(out: str) -> dict:
    return json.loads(lines(out)[-1])


def one_error_line(err: str) -> str:
    """The stderr of a failure without --debug: exactly one line, ``error: ...``, no traceback."""
    assert "Traceback" not in err
    errors = [line for line in lines(err) if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


# --- parsing ---------------------------------------------------------------------------------


def test_every_subcommand_takes_debug_json_config_and_set():
    parser = cli.build_parser()
    for command in (["validate"], ["train"], ["retrain"], ["models"], ["promote", "3", "--reason", "r"],
                    ["rollback"], ["predict", "--input", "a", "--output", "b"], ["schedule"]):
        args = parser.parse_args([*command, "--debug", "--json", "--config", "c.yaml", "--set", "a.b=1", "--set", "c.d=2"])
        assert (args.debug, args.json, args.config, args.set) == (True, True, "c.yaml", ["a.b=1", "c.d=2"]), command


@pytest.mark.parametrize("argv", [["validate", "--bogus", "--json"], ["--json"], ["promote", "--json"]])
def test_usage_errors_exit_2_with_a_json_last_line(argv, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert one_error_line(err).startswith("error: sentibridge")
    assert last_json(out)["ok"] is False


@pytest.mark.parametrize(("flags", "message"), [
    (["--partitions", "0"], "at least 1"),
    (["--engine", "dask"], "invalid choice"),
])
def test_predict_engine_flags_are_checked_by_the_parser(flags, message, capsys):
    assert cli.main(["predict", "--input", "a.csv", "--output", "b.csv", *flags]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_spark_flags_without_the_spark_engine_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SENTIBRIDGE_HOME", str(tmp_path / "home"))
    assert cli.main(["predict", "--input", "a.csv", "--output", "b.csv", "--spark-master", "local[2]"]) == 1
    assert "go with --engine spark" in one_error_line(capsys.readouterr().err)


def test_unknown_config_key_is_exit_2():
    assert cli.main(["validate", "--set", "data.nope=1"]) == 2


# --- validate --------------------------------------------------------------------------------

REPORT = {"rows_in": 4, "rows_valid": 4, "rows_quarantined": 0, "data_version": "abc.dir"}


def fake_validate(calls: list):
    def validate(settings, prepared=False, version=None):
        calls.append((settings.data.path, prepared))
        frames = {"train": pd.DataFrame({"text": ["a", "b"]}), "quarantine": pd.DataFrame({"text": []})} if prepared else {}
        return run.ValidateResult(run_id="rid-1", run_name="sentibridge-x", data_report=dict(REPORT), seconds=1.25,
                                  prepared=frames)

    return validate


@pytest.fixture
def validate_calls(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(run, "validate", fake_validate(calls))
    monkeypatch.setattr("sentibridge.data.report.data_report_text", lambda report: f"report of {report['rows_in']} rows")
    return calls


def test_validate_renders_the_report_and_ends_in_json(validate_calls, capsys):
    assert cli.main(["validate", "--data", "some/where", "--json"]) == 0
    out, err = capsys.readouterr()
    assert validate_calls == [("some/where", False)]
    assert "report of 4 rows" in out and "pipeline run: sentibridge-x  (1.2 s)" in out
    assert last_json(out) == {"ok": True, "pipeline_run_id": "rid-1", "seconds": 1.25, **REPORT}
    assert err == ""


def test_validate_export_writes_the_prepared_splits(validate_calls, tmp_path, capsys):
    folder = tmp_path / "prepared"
    assert cli.main(["validate", "--export", str(folder)]) == 0
    assert validate_calls[0][1] is True
    assert len(pd.read_parquet(folder / "train.parquet")) == 2
    assert (folder / "quarantine.parquet").is_file()
    assert json.loads((folder / "report.json").read_text())["data_version"] == "abc.dir"
    assert f"prepared data written to {folder}" in capsys.readouterr().out


def test_export_into_a_file_is_one_oserror_line(validate_calls, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert cli.main(["validate", "--export", str(blocker / "out"), "--json"]) == 1
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert str(blocker / "out") in line and ("Not a directory" in line or "File exists" in line)
    assert last_json(out) == {"ok": False, "error": line.removeprefix("error: ")}


# --- train and retrain -----------------------------------------------------------------------


def train_result(promote: bool = True) -> run.TrainResult:
    decision = Decision(
        promote=promote, reference="base_zero_shot", candidate_version="1", champion_version=None,
        rule={"mode": "no_regression", "max_drop": 0.0, "min_gain": 0.5},
        languages=[{"language": "en", "candidate": 0.8, "reference": 0.5, "delta": 30.0}],
        mean={"candidate": 0.8, "reference": 0.5, "delta": 30.0}, reasons=["mean +30.0 points"],
    ).to_dict()
    return run.TrainResult(
        run_id="rid-2", run_name="sentibridge-y", data_report=dict(REPORT),
        metrics={"per_language": {"en": {"f1": 0.8, "accuracy": 0.75, "support": 4}}, "f1_macro_avg": 0.8,
                 "eval_seconds": 2.0, "eval_rows_per_s": 2.0, "precision": "bf16"},
        registration={"registered_model": "m", "model_version": "1", "mlflow_run_id": "mr", "tracking_uri": "sqlite:///x"},
        decision=decision,
        augmentation={"languages": [{"language": "en", "retrieved": 2, "self_labelled": 1}]},
        train_summary={"steps": 2, "precision": "fp32", "tokens_per_s": 100.0},
        seconds=12.34,
    )


def test_train_reports_what_calibration_changed_and_stays_quiet_without_it(monkeypatch, capsys):
    result = train_result()
    result.metrics["calibration"] = {"method": "prior", "offsets": {"en": [0.0, 0.1, -0.2]}, "val_rows": 30,
                                     "uncalibrated_f1_macro_avg": 0.77, "uncalibrated_per_language": {"en": 0.77}}
    monkeypatch.setattr(run, "train", lambda settings, version=None, run_config=None: result)
    assert cli.main(["train", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert "calibrated 1 language on 30 val rows (prior): mean macro-F1 +3.0 points against the raw scores" in out
    assert last_json(out)["calibration"]["offsets"] == {"en": [0.0, 0.1, -0.2]}
    monkeypatch.setattr(run, "train", lambda settings, version=None, run_config=None: train_result())
    assert cli.main(["train", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert "calibrated" not in out and last_json(out)["calibration"] is None


def test_train_prints_tables_and_the_json_fields(monkeypatch, capsys):
    monkeypatch.setattr(run, "train", lambda settings, version=None, run_config=None: train_result())
    assert cli.main(["train", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert "augmented: en +3" in out
    assert "gate: PROMOTED candidate v1 against base model (zero-shot)" in out
    assert "registered m version 1" in out
    payload = last_json(out)
    assert set(payload) == TRAIN_FIELDS
    assert payload["promoted"] is True and payload["model_version"] == "1" and payload["seconds"] == 12.3
    assert payload["per_language"]["en"]["f1"] == 0.8
    assert payload["eval"] == {"eval_seconds": 2.0, "eval_rows_per_s": 2.0, "precision": "bf16"}


@pytest.fixture
def registry(monkeypatch):
    """A fake registry behind ``cli._registry``: no MLflow store is opened."""
    from sentibridge.registry import promotion

    state = SimpleNamespace(versions=[], champion=None)
    monkeypatch.setattr(cli, "_registry", lambda settings: ("client", settings.registry.model_name, Path("locks")))
    monkeypatch.setattr(promotion, "alias_version", lambda client, name, alias: state.champion)
    monkeypatch.setattr(promotion, "list_versions", lambda client, name: state.versions)
    return state


def test_retrain_runs_without_a_champion_and_adds_ran_and_reason(registry, monkeypatch, capsys):
    from sentibridge.data.version import data_version

    passed = []
    monkeypatch.setattr(run, "train", lambda settings, version=None, run_config=None: passed.append(version) or train_result(promote=False))
    assert cli.main(["retrain", "--if-data-changed", "--data", str(SAMPLE), "--json"]) == 0
    payload = last_json(capsys.readouterr().out)
    assert set(payload) == TRAIN_FIELDS | {"ran", "reason"}
    assert payload["ran"] is True and payload["promoted"] is False
    # The version retrain decided on is handed to the pipeline, so the data is hashed once.
    assert passed[0] is not None and passed[0].md5 == data_version(SAMPLE).md5


def test_retrain_skips_when_the_champion_has_this_data(registry, monkeypatch, capsys):
    from sentibridge.data.version import data_version

    registry.champion = SimpleNamespace(version=4, tags={"data_version": data_version(SAMPLE).md5})
    monkeypatch.setattr(run, "train", lambda settings, version=None, run_config=None: pytest.fail("must not train"))
    assert cli.main(["retrain", "--if-data-changed", "--data", str(SAMPLE), "--json"]) == 0
    payload = last_json(capsys.readouterr().out)
    assert payload["ok"] is True and payload["ran"] is False and set(payload) == {"ok", "ran", "reason"}


def test_retrain_on_a_missing_path_is_a_data_error(registry, tmp_path, capsys):
    assert cli.main(["retrain", "--data", str(tmp_path / "nope"), "--json"]) == 1
    out, err = capsys.readouterr()
    assert "no such file or folder" in one_error_line(err)
    assert last_json(out)["ok"] is False


# --- models ----------------------------------------------------------------------------------


def test_models_json_prints_only_json(registry, capsys):
    registry.versions = [{"version": "2", "aliases": ["champion"], "f1_macro_avg": 0.7, "gate": "promoted",
                          "data_version": "abc", "created": "today", "per_language": {}}]
    assert cli.main(["models", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert len(lines(out)) == 1
    assert json.loads(out)["versions"][0]["aliases"] == ["champion"]


def test_models_table_without_json(registry, capsys):
    registry.versions = [{"version": "2", "aliases": ["champion"], "f1_macro_avg": 0.7, "gate": None,
                          "data_version": "abc", "created": "today", "per_language": {}}]
    assert cli.main(["models"]) == 0
    out, _ = capsys.readouterr()
    assert "champion" in out and "{" not in out


# --- the error boundary ----------------------------------------------------------------------


def test_mlflow_exception_names_the_tracking_uri(registry, monkeypatch, capsys):
    from mlflow.exceptions import MlflowException

    from sentibridge.registry import promotion

    def broken(client, name):
        raise MlflowException("Registered Model with name=m not found\nmore detail")

    monkeypatch.setattr(promotion, "list_versions", broken)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/mlflow.db")
    assert cli.main(["models", "--json"]) == 1
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert line == "error: MLflow (sqlite:////somewhere/mlflow.db): Registered Model with name=m not found"
    assert last_json(out) == {"ok": False, "error": line.removeprefix("error: ")}


def test_unknown_stack_is_one_config_error_naming_the_stacks(monkeypatch, capsys):
    import zenml.client

    from sentibridge import home

    class FakeClient:
        def list_stacks(self, **kwargs):
            stacks = [SimpleNamespace(name="default"), SimpleNamespace(name="sentibridge")]
            return SimpleNamespace(items=stacks, index=1, total_pages=1)

        def activate_stack(self, name):
            pytest.fail("an unknown stack must not be activated")

    monkeypatch.setattr(zenml.client, "Client", FakeClient)
    monkeypatch.setattr(home, "activate", home.resolve_home)  # no folders, no environment changes
    monkeypatch.setenv("SENTIBRIDGE_STACK", "prod-k8s")
    assert cli.main(["validate", "--data", str(SAMPLE), "--json"]) == 2
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert "'prod-k8s'" in line and "default, sentibridge" in line
    assert last_json(out)["ok"] is False


def boom(settings, version=None, run_config=None):
    return 1 / 0


def test_unexpected_error_is_one_line_and_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(run, "train", boom)
    assert cli.main(["train", "--json"]) == 1
    out, err = capsys.readouterr()
    assert one_error_line(err) == "error: ZeroDivisionError: division by zero (--debug shows the traceback)"
    assert last_json(out)["error"] == "ZeroDivisionError: division by zero (--debug shows the traceback)"


@pytest.mark.parametrize("switch", ["flag", "env"])
def test_debug_shows_the_traceback(monkeypatch, capsys, switch):
    monkeypatch.setattr(run, "train", boom)
    argv = ["train", "--json"]
    if switch == "flag":
        argv.append("--debug")
    else:
        monkeypatch.setenv("SENTIBRIDGE_DEBUG", "1")
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert "Traceback" in err and "in boom" in err
    assert err.strip().splitlines()[-1] == "error: ZeroDivisionError: division by zero"
    assert last_json(out)["ok"] is False


def test_user_error_keeps_its_exit_code(monkeypatch, capsys):
    def bad(settings, prepared=False, version=None):
        raise DataError("x.csv: missing column(s) language")

    monkeypatch.setattr(run, "validate", bad)
    assert cli.main(["validate", "--json"]) == 1
    out, err = capsys.readouterr()
    assert one_error_line(err) == "error: x.csv: missing column(s) language"
    assert last_json(out) == {"ok": False, "error": "x.csv: missing column(s) language"}


def test_interrupt_is_130_with_json(monkeypatch, capsys):
    def interrupted(settings, version=None, run_config=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "train", interrupted)
    assert cli.main(["train", "--json"]) == 130
    assert last_json(capsys.readouterr().out) == {"ok": False, "error": "interrupted"}


def test_sigterm_is_143_with_json_and_the_previous_handler_comes_back(monkeypatch, capsys):
    def terminated(settings, version=None, run_config=None):
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, turned into an exception by main
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(run, "train", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["train", "--json"]) == 143
    out, err = capsys.readouterr()
    assert one_error_line(err) == "error: terminated"
    assert last_json(out) == {"ok": False, "error": "terminated"}
    assert signal.getsignal(signal.SIGTERM) is before


# --- a failed step: shown once ---------------------------------------------------------------


TRACKER_URI = "http://127.0.0.1:5999"


def fake_zenml_run(monkeypatch, *infos, failed: str = ""):
    """A ZenML client whose run has a step per ``infos`` (None: completed, unless named ``failed``),
    on a stack whose MLflow tracker logs in with the secret ``team-mlflow`` (user ``ci-bot``)."""
    import zenml.client
    from zenml.enums import ExecutionStatus

    def status(name, info):
        return ExecutionStatus.FAILED if info is not None or name == failed else ExecutionStatus.COMPLETED

    steps = {
        f"step{i}": SimpleNamespace(name=f"step{i}", exception_info=info, status=status(f"step{i}", info))
        for i, info in enumerate(infos)
    }
    store = SimpleNamespace(config=SimpleNamespace(path="s3://team-bucket/zenml", client_kwargs={"endpoint_url": "http://s3.test"}))
    secret = {"username": "ci-bot", "password": "never-shown"}

    class FakeClient:
        def get_pipeline_run(self, name):
            return SimpleNamespace(steps=steps)

        def get_secret_by_name_and_private_status(self, name, **_):
            # ZenML's own config class resolves "{{secret.key}}" through this call.
            assert name == "team-mlflow"
            return SimpleNamespace(values=secret, secret_values=secret)

    monkeypatch.setattr(zenml.client, "Client", FakeClient)
    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import MLFlowExperimentTrackerConfig

    tracker = SimpleNamespace(config=MLFlowExperimentTrackerConfig(
        tracking_uri=TRACKER_URI, tracking_username="{{team-mlflow.username}}", tracking_password="{{team-mlflow.password}}"))
    FakeClient.active_stack = SimpleNamespace(experiment_tracker=tracker, artifact_store=store)


def info(source, message, traceback="Traceback (most recent call last):\n  in step code\nValueError: boom"):
    return SimpleNamespace(source=source, message=message, traceback=traceback)


def test_a_steps_user_error_is_reraised_as_itself(monkeypatch):
    fake_zenml_run(monkeypatch, None, info("sentibridge.errors.DataError", "too many rows quarantined"))
    with pytest.raises(DataError, match="too many rows quarantined"):
        run.raise_step_error("r")


def test_a_steps_unexpected_error_becomes_step_failed_with_its_traceback(monkeypatch):
    fake_zenml_run(monkeypatch, info("builtins.ValueError", "boom"))
    with pytest.raises(StepFailed) as caught:
        run.raise_step_error("r")
    assert str(caught.value) == "step step0 failed: ValueError: boom"
    assert "in step code" in caught.value.detail


def test_a_class_named_like_ours_elsewhere_is_not_a_user_error(monkeypatch):
    fake_zenml_run(monkeypatch, info("somelib.errors.DataError", "not ours"))
    with pytest.raises(StepFailed):
        run.raise_step_error("r")


def refused(status: int):
    from mlflow.exceptions import MlflowException, get_error_code

    endpoint = "/api/2.0/mlflow/experiments/get-by-name"
    return MlflowException(f"API request to endpoint {endpoint} failed with error code {status} != 200",
                           error_code=get_error_code(status))


def test_a_step_refused_by_the_stacks_tracker_names_the_server_and_the_secret(monkeypatch):
    """ZenML records no error for a step that failed while its tracker logged in: the CLI reads the exception."""
    fake_zenml_run(monkeypatch, None, None, failed="step1")
    with pytest.raises(StepFailed) as caught:
        run.raise_step_error("r", refused(401))
    assert str(caught.value) == (
        f"step step1 failed: MLflow tracking server {TRACKER_URI} refused the login (401 Unauthorized): "
        "check the username and password in ZenML secret 'team-mlflow' (the stack's tracker)"
    )
    assert caught.value.known and "never-shown" not in str(caught.value)


def test_a_step_whose_user_lacks_a_permission_names_the_user_and_the_experiment(monkeypatch):
    fake_zenml_run(monkeypatch, None, failed="step0")
    with pytest.raises(StepFailed) as caught:
        run.raise_step_error("r", refused(403))
    assert str(caught.value) == (
        f"step step0 failed: MLflow tracking server {TRACKER_URI}: user 'ci-bot' lacks permission on the experiment "
        "(/api/2.0/mlflow/experiments/get-by-name) (403 Forbidden); a server admin grants it "
        "(docs: infrastructure, what the servers need)"
    )


def test_a_remote_artifact_store_failure_names_the_store(monkeypatch):
    fake_zenml_run(monkeypatch, info("builtins.FileNotFoundError", "team-bucket/zenml/x"))
    with pytest.raises(StepFailed) as caught:
        run.raise_step_error("r", FileNotFoundError(2, "No such file or directory", "team-bucket/zenml/x"))
    assert str(caught.value) == (
        "step step0 failed: artifact store s3://team-bucket/zenml (http://s3.test): team-bucket/zenml/x: No such file or directory"
    )


def test_a_known_step_failure_is_one_line_without_the_bug_hint(monkeypatch, capsys):
    def failing(settings, version=None, run_config=None):
        raise StepFailed("augment", "MLflow tracking server http://x refused the login (401 Unauthorized): check y", known=True)

    monkeypatch.setattr(run, "train", failing)
    assert cli.main(["train"]) == 1
    assert capsys.readouterr().err == (
        "error: step augment failed: MLflow tracking server http://x refused the login (401 Unauthorized): check y\n"
    )


def test_a_reader_that_leaves_the_pipe_is_quiet(tmp_path):
    """`sentibridge models | head -1`: stdout's reader is gone before the table is written."""
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    proc = subprocess.Popen([sys.executable, "-m", "sentibridge.cli", "models"], cwd=REPO, env=cli_env(tmp_path / "home"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch, capsys):
    def failing(settings, version=None, run_config=None):
        raise BrokenPipeError(32, "Broken pipe")  # a server's socket, say: stdout is still there

    monkeypatch.setattr(run, "train", failing)
    assert cli.main(["train"]) == 1
    assert capsys.readouterr().err == "error: Broken pipe\n"


@pytest.mark.parametrize("debug", [False, True])
def test_a_failed_step_is_shown_once(monkeypatch, capsys, debug):
    def failing(settings, version=None, run_config=None):
        raise StepFailed("train", "ValueError: boom", "Traceback (most recent call last):\n  in step code\nValueError: boom")

    monkeypatch.setattr(run, "train", failing)
    assert cli.main(["train", *(["--debug"] if debug else [])]) == 1
    _, err = capsys.readouterr()
    assert err.count("ValueError: boom") == (2 if debug else 1)  # the step's traceback, then the line
    assert err.count("Traceback") == (1 if debug else 0)
    assert "error: step train failed: ValueError: boom" in err
    assert os.environ.get("SENTIBRIDGE_DEBUG") is None


def test_rollback_passes_its_reason_to_the_registry(registry, monkeypatch, capsys):
    from sentibridge.registry import promotion

    calls = []
    monkeypatch.setattr(promotion, "rollback", lambda client, name, locks, reason=None: calls.append(reason) or ("3", "2"))
    monkeypatch.setattr(cli, "_zenml_production", lambda settings, version: "")
    assert cli.main(["rollback", "--reason", "fr regressed in production", "--json"]) == 0
    assert calls == ["fr regressed in production"]
    assert last_json(capsys.readouterr().out) == {"ok": True, "champion": "2", "rolled_back": "3"}
