"""`sentibridge train` end to end: real ZenML store, real MLflow, a few steps.

A tiny Gemma-3 stands in for the base model: what is tested here is what the run records,
registers and serves. The real Gemma-3-270M trains end to end in ``default_model`` (the
`make run` model) and loads in ``test_gemma_model``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from tests.conftest import SAMPLE, TINY_MODEL, TINY_TRAIN, cli_env
from tests.integration.test_validate_cli import last_json, run_cli

pytestmark = pytest.mark.integration

#: ``eval.calibration_min_rows=3``: the 3 val rows per language that ``eval.max_rows_per_language``
#: leaves are enough to calibrate, so the run fits, saves and serves offsets.
TINY = [*TINY_TRAIN, *TINY_MODEL, "--set", "demonstrations.k=2", "--set", "augment.enabled=true",
        "--set", "eval.calibration_min_rows=3"]


#: Languages given only 2 train rows in the test's copy of the sample, so augmentation has work.
SHRUNK = ("ar", "hi")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny real run, shared by the checks below."""
    home = tmp_path_factory.mktemp("train") / "home"
    rows = pd.read_json(SAMPLE / "reviews.jsonl", lines=True)
    shrunk = rows[rows["language"].isin(SHRUNK)].groupby("language").head(12).copy()
    shrunk["split"] = (["train"] * 2 + ["val"] * 2 + ["test"] * 8) * len(SHRUNK)
    rows = pd.concat([rows[~rows["language"].isin(SHRUNK)], shrunk])
    data = home.parent / "imbalanced"
    data.mkdir()
    rows.to_json(data / "reviews.jsonl", orient="records", lines=True, force_ascii=False)
    proc = run_cli(home, "train", "--config", "configs/default.yaml", "--data", str(data), *TINY, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home, last_json(proc), proc


@pytest.fixture
def mlflow_at(trained, monkeypatch):
    home, result, _ = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", result["tracking_uri"])
    mlflow.set_tracking_uri(result["tracking_uri"])
    return mlflow.MlflowClient()


def test_json_contract_and_table(trained):
    _, result, proc = trained
    for key in ("pipeline_run_id", "mlflow_run_id", "tracking_uri", "registered_model", "model_version",
                "per_language", "f1_macro_avg"):
        assert key in result, key
    assert result["registered_model"] == "sentibridge-sentiment" and result["model_version"] == "1"
    assert result["train"]["steps"] == 2
    languages = set(result["per_language"])
    assert len(languages) == 9
    for scores in result["per_language"].values():
        assert 0.0 <= scores["f1"] <= 1.0 and scores["support"] == 3
    # rows true, columns predicted, in LABELS order; each language's counts are its test rows
    assert set(result["confusion"]) == languages
    assert all(len(m) == 3 and sum(map(sum, m)) == 3 for m in result["confusion"].values())
    assert "macro-F1" in proc.stdout  # the per-language table


def test_mlflow_run_has_metrics_plots_params_and_provenance(trained, mlflow_at):
    home, result, _ = trained
    run = mlflow_at.get_run(result["mlflow_run_id"])
    assert run.info.artifact_uri.startswith((home / "mlflow").as_uri())  # all state under the home
    for lang in result["per_language"]:
        assert f"f1_{lang}" in run.data.metrics and f"accuracy_{lang}" in run.data.metrics
    assert run.data.metrics["f1_macro_avg"] == pytest.approx(result["f1_macro_avg"])
    assert len(mlflow_at.get_metric_history(run.info.run_id, "loss")) == 2  # per-step loss
    assert "learning_rate" in run.data.metrics and "tokens_per_s" in run.data.metrics
    assert run.data.params["lora.r"] == "16" and run.data.params["train.max_steps"] == "2"
    assert run.data.tags["data_version"].endswith(".dir") and run.data.tags["git_commit"]
    assert run.data.tags["version.torch"] and run.data.tags["version.peft"]
    artifacts = {a.path for a in mlflow_at.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/f1_by_language.png", "plots/confusion_matrices.png"} <= artifacts


def test_augmentation_fills_the_shrunk_languages_and_reaches_mlflow(trained, mlflow_at):
    _, result, proc = trained
    report = {row["language"]: row for row in result["augmentation"]["languages"]}
    for lang in SHRUNK:
        # 6 rows elsewhere (median 6): deficit 4, capped at 2 x 2 own rows.
        assert report[lang]["original"] == 2 and report[lang]["retrieved"] == 4, report[lang]
        assert report[lang]["level"] != "high"
    assert all(row["retrieved"] == 0 for lang, row in report.items() if lang not in SHRUNK)
    assert result["augmentation"]["augment_retrieved_rows"] == 8
    assert "augmented: ar +4, hi +4" in proc.stdout
    run = mlflow_at.get_run(result["mlflow_run_id"])
    assert run.data.metrics["augment_retrieved_rows"] == 8
    assert "augmentation/report.json" in {a.path for a in mlflow_at.list_artifacts(run.info.run_id, "augmentation")}


def test_registered_version_carries_scores_and_serves(trained, mlflow_at):
    _, result, _ = trained
    version = mlflow_at.get_model_version(result["registered_model"], result["model_version"])
    per_language = {lang: float(version.tags[f"f1_{lang}"]) for lang in result["per_language"]}
    assert per_language == pytest.approx({lang: s["f1"] for lang, s in result["per_language"].items()}, abs=1e-4)
    assert version.tags["data_version"].endswith(".dir")
    model = mlflow.pyfunc.load_model(f"models:/{result['registered_model']}/{result['model_version']}")
    out = model.predict(pd.DataFrame({"text": ["Great service, thank you!", "Terrible."], "language": ["en", "en"]}))
    assert list(out["label"]) and set(out["label"]) <= {"negative", "neutral", "positive"}
    assert out[["score_negative", "score_neutral", "score_positive"]].sum(axis=1).round(4).eq(1.0).all()


def test_mlflow_ui_shows_decision_run_name_datasets_and_comparison(trained, mlflow_at):
    _, result, _ = trained
    name, number = result["registered_model"], result["model_version"]
    version = mlflow_at.get_model_version(name, number)
    assert version.description.startswith("### Gate: ") and "| language |" in version.description
    assert "`champion`" in mlflow_at.get_registered_model(name).description
    run = mlflow_at.get_run(result["mlflow_run_id"])
    outcome = result["decision"]["outcome"]
    assert outcome in ("promoted", "rejected", "inconclusive")
    assert run.info.run_name.startswith(f"v{number} {outcome}")
    inputs = {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"imbalanced-train", "imbalanced-val", "imbalanced-test"}
    assert set(inputs.values()) == {run.data.tags["data_version"]}
    assert "gate/f1_vs_reference.png" in {a.path for a in mlflow_at.list_artifacts(run.info.run_id, "gate")}


def test_served_model_carries_its_demonstrations(trained, mlflow_at):
    _, result, _ = trained
    model = mlflow.pyfunc.load_model(f"models:/{result['registered_model']}/{result['model_version']}")
    served = model.unwrap_python_model()
    assert served.store is not None and served.store.k == 2
    # Original train rows only: 6 per language in 7 languages and the 2 kept in each shrunk one.
    assert len(served.store) == 6 * 7 + 2 * len(SHRUNK)
    assert set(served.store.rows["language"]) == set(result["per_language"])


def test_calibration_is_fitted_on_val_saved_with_the_model_and_served(trained, mlflow_at):
    _, result, proc = trained
    calibration = result["calibration"]
    # The shrunk languages have 2 val rows, both negative: too few, and not every label.
    assert calibration["method"] == "prior" and set(calibration["offsets"]) == set(result["per_language"]) - set(SHRUNK)
    assert calibration["val_rows"] == 3 * 7
    assert set(calibration["uncalibrated_per_language"]) == set(result["per_language"])
    assert "calibrated 7 languages on 21 val rows (prior)" in proc.stdout
    run = mlflow_at.get_run(result["mlflow_run_id"])
    assert run.data.metrics["f1_macro_avg_uncalibrated"] == pytest.approx(calibration["uncalibrated_f1_macro_avg"])
    assert "evaluation/calibration.json" in {a.path for a in mlflow_at.list_artifacts(run.info.run_id, "evaluation")}
    served = mlflow.pyfunc.load_model(f"models:/{result['registered_model']}/{result['model_version']}").unwrap_python_model()
    assert served.offsets == calibration["offsets"]


def test_zenml_model_version_is_linked(trained):
    home, result, _ = trained
    probe = (
        "import json; from zenml.client import Client; "
        f"v = Client().get_model_version({result['registered_model']!r}, 'latest'); "
        "print(json.dumps({k: v.run_metadata[k] for k in ('mlflow_model_version', 'per_language_f1')}))"
    )
    env = {**cli_env(home), "ZENML_CONFIG_PATH": str(home / "zenml")}
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads(proc.stdout.strip().splitlines()[-1])
    assert str(meta["mlflow_model_version"]) == result["model_version"]
    assert set(meta["per_language_f1"]) == set(result["per_language"])


def test_mistyped_override_is_a_usage_error(tmp_path):
    proc = run_cli(tmp_path / "home", "train", "--set", "train.max_step=1")
    assert proc.returncode == 2
    assert "unknown config key 'train.max_step'" in proc.stderr and "Traceback" not in proc.stderr
