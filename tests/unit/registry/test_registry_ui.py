"""What people see in the MLflow UI, on a real SQLite store: descriptions, run names, dataset inputs."""

from __future__ import annotations

import re

import mlflow
import pytest

from sentibridge import tracking
from sentibridge.config import GateConfig, Settings
from sentibridge.registry import promotion as registry
from sentibridge.registry.gate import decide
from sentibridge.registry.lock import PromotionLock
from sentibridge.registry.registration import describe_registered_model, f1_from_tags, f1_tags, log_and_register_model

MD5 = "d41d8cd98f00b204e9800998ecf8427e.dir"


@pytest.fixture
def mlflow_store(tmp_path):
    """A SQLite store as the fluent API's target, with artifacts under ``tmp_path``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("ui", artifact_location=(tmp_path / "artifacts").as_uri())
    yield client, experiment, tmp_path
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _version(client, root, name: str) -> str:
    client.create_registered_model(name)
    source = root / name
    source.mkdir()
    return str(client.create_model_version(name, source.as_uri()).version)


def test_a_200_language_decision_is_a_whole_markdown_table_on_the_version(mlflow_store, tmp_path):
    client, _, root = mlflow_store
    languages = [f"l{k:03d}" for k in range(200)]
    reference = {lang: 0.8 for lang in languages}
    candidate = {lang: 0.8 - k / 1000 for k, lang in enumerate(languages)}  # l199 drops most: -19.9 points
    decision = decide(candidate, reference, GateConfig(), "champion", "2", "1")
    assert len(decision.markdown().splitlines()) > 200  # unbounded: every language

    version = _version(client, root, "many")
    registry.apply_decision(client, "many", version, decision, PromotionLock(tmp_path / "locks", 60), lambda current: pytest.fail("moved"))
    text = client.get_model_version("many", version).description
    assert len(text) <= registry.GATE_DESCRIPTION_CHARS
    assert text.startswith("### Gate: not promoted")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert all(line.endswith("|") and line.count("|") == 5 for line in table), table  # no row cut mid-way
    shown = [line.split("|")[1].strip() for line in table[2:-1]]
    assert len(shown) > 10 and "l199" in shown and "l000" not in shown  # the largest drops come first
    assert table[-1].startswith("| **mean** |")
    assert re.search(rf"_{len(shown)} of 200 languages shown", text)
    assert "more in the run's `gate/decision.json`" in text
    assert "- l199 drops -19.9 points" in text and "- l001 drops" not in text  # the shown languages' reasons
    assert "- mean gains -9.95 points" in text  # and the ones about the whole


def test_registered_model_gets_a_description_once(mlflow_store):
    client, _, _ = mlflow_store
    client.create_registered_model("described")
    describe_registered_model(client, "described")
    text = client.get_registered_model("described").description
    assert "`champion`" in text and "`challenger`" in text and "models:/described@champion" in text
    client.update_registered_model("described", description="edited in the UI")
    describe_registered_model(client, "described")
    assert client.get_registered_model("described").description == "edited in the UI"


def test_a_version_is_registered_with_its_tags_in_one_request(mlflow_store, tmp_path, monkeypatch):
    """Tags travel with the version's creation: on a remote server each request is a round trip
    (and a password check), and no reader sees the version without its scores."""
    def one_by_one(*_args, **_kwargs):
        raise AssertionError("a tag was set on its own, after the version was created")

    monkeypatch.setattr(mlflow.MlflowClient, "set_model_version_tag", one_by_one)
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text("{}")
    tags = {"data_version": MD5, **f1_tags({"en": 0.81, "hi": 0.52})}
    client, experiment, _ = mlflow_store
    with mlflow.start_run(experiment_id=experiment):  # as in the register step
        registered = log_and_register_model(merged, "tagged", tags)
    version = client.get_model_version("tagged", registered["model_version"])
    assert version.tags["data_version"] == MD5
    assert f1_from_tags(version.tags) == {"en": 0.81, "hi": 0.52}


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [
        ({"en": 0.9, "fr": 0.5}, {"en": 0.6, "fr": 0.5}, "v3 promoted (mean F1 70.0)"),
        ({"en": 0.9, "fr": 0.479}, {"en": 0.6, "fr": 0.5}, "v3 rejected: fr -2.1"),
        ({"en": 0.5, "fr": 0.4, "de": 0.3}, {"en": 0.6, "fr": 0.6, "de": 0.35}, "v3 rejected: fr -20.0, en -10.0 (+1 more)"),
        ({"en": 0.6, "fr": 0.5}, {"en": 0.6, "fr": 0.5}, "v3 rejected: mean +0.0"),
    ],
)
def test_run_name_says_version_and_outcome(candidate, reference, expected):
    assert decide(candidate, reference, GateConfig(), "champion", "3", "2").run_name() == expected


def test_name_run_renames_the_active_run_and_keeps_the_pipeline_name(mlflow_store):
    client, experiment, _ = mlflow_store
    tracking.name_run("ignored")  # quiet without a run
    with mlflow.start_run(experiment_id=experiment, run_name="sentibridge-20261201-abc123") as run:
        tracking.name_run("v3 promoted (mean F1 71.2)")
    renamed = client.get_run(run.info.run_id)
    assert renamed.info.run_name == "v3 promoted (mean F1 71.2)"
    assert renamed.data.tags["mlflow.runName"] == "v3 promoted (mean F1 71.2)"
    assert renamed.data.tags["zenml_pipeline_run"] == "sentibridge-20261201-abc123"


def _report(tmp_path) -> dict:
    return {
        "data_path": str(tmp_path / "sample"),
        "data_version": MD5,
        "data_version_source": "dvc",
        "languages": {"en": {"train": 4, "val": 1, "test": 2}, "fr": {"train": 3, "val": 1, "test": 2}},
    }


def test_log_dataset_records_the_dvc_md5_as_digest(mlflow_store):
    client, experiment, root = mlflow_store
    tracking.log_dataset(_report(root), "train")  # quiet without a run
    with mlflow.start_run(experiment_id=experiment) as run:
        tracking.log_dataset(_report(root), "train")
    (logged,) = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert logged.dataset.digest == MD5 and logged.dataset.name == "sample-train"
    assert str(root / "sample") in logged.dataset.source
    assert {tag.key: tag.value for tag in logged.tags} == {"mlflow.data.context": "training", "rows": "7"}


def test_run_context_logs_train_val_and_test_inputs(mlflow_store):
    client, experiment, root = mlflow_store
    with mlflow.start_run(experiment_id=experiment) as run:
        tracking.log_run_context(Settings(), _report(root))
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    contexts = {i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"] for i in inputs}
    assert contexts == {"sample-train": "training", "sample-val": "validation", "sample-test": "testing"}
    assert {i.dataset.digest for i in inputs} == {MD5}
