"""`train.soup_seeds`: K train steps, one soup step, one model evaluated, registered and gated.

Also runs the label-issue step in ``drop`` mode inside the real pipeline.
"""

from __future__ import annotations

import json

import mlflow
import pytest

from tests.conftest import SAMPLE, TINY_MODEL, TINY_TRAIN
from tests.integration.test_validate_cli import last_json, run_cli

pytestmark = pytest.mark.integration

SEEDS = [42, 7, 123]


@pytest.fixture(scope="module")
def souped(tmp_path_factory):
    home = tmp_path_factory.mktemp("soup") / "home"
    proc = run_cli(home, "train", "--config", "configs/default.yaml", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL,
                   "--set", f"train.soup_seeds={json.dumps(SEEDS)}", "--set", "data.label_issues=drop", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc)
    mlflow.set_tracking_uri(result["tracking_uri"])
    return result, mlflow.MlflowClient(), home


def test_one_model_from_three_members(souped):
    result, client, _ = souped
    assert result["train"]["soup"]["seeds"] == SEEDS
    assert [m["seed"] for m in result["train"]["soup"]["members"]] == SEEDS
    assert result["train"]["steps"] == 2 * len(SEEDS)
    assert result["model_version"] == "1"  # one registered model, not one per member
    version = client.get_model_version(result["registered_model"], "1")
    assert version.tags["soup_seeds"] == "42,7,123"


def test_members_keep_their_final_checkpoint_only_until_souped(souped):
    result, _, home = souped
    members = result["train"]["soup"]["members"]
    assert [m["resumed_from"] for m in members] == [0, 0, 0]  # a fresh home: every member trained
    # Each member kept its final checkpoint for an interrupted soup to resume; the soup cleared them.
    assert (home / "runs").is_dir() and not list((home / "runs").iterdir())


def test_mlflow_run_lists_members_with_their_per_language_f1(souped):
    result, client, _ = souped
    run = client.get_run(result["mlflow_run_id"])
    for seed in SEEDS:
        for language in result["per_language"]:
            assert f"seed{seed}_f1_{language}" in run.data.metrics, (seed, language)
    assert run.data.metrics["f1_macro_avg"] == pytest.approx(result["f1_macro_avg"])  # the soup's own
    members = json.loads(open(client.download_artifacts(run.info.run_id, "soup/member_f1.json")).read())
    assert list(members) == [f"seed{seed}" for seed in SEEDS]


def test_gate_uses_the_members_measured_seed_spread_and_says_so(souped):
    result, _, _ = souped
    rule = result["decision"]["rule"]
    assert rule["seed_noise_source"] == "measured on 3 soup members"


def test_label_issues_are_logged_and_flagged_train_rows_dropped(souped):
    result, client, _ = souped
    path = client.download_artifacts(result["mlflow_run_id"], "data/label_issues.json")
    issues = json.loads(open(path).read())
    assert issues["mode"] == "drop"
    assert issues["train_rows_changed"] == issues["per_split"]["train"]["flagged"]
    assert client.get_run(result["mlflow_run_id"]).data.metrics["label_issues_flagged"] == issues["flagged"]
