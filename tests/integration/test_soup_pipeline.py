"""`train.soup_seeds`: K train steps, one soup step, one model evaluated, registered and gated.

The soup is first killed while its second member saves its final checkpoint (the first member's
step has finished by then), then run again to the end, as a run cut off by a session's end is. Also runs the label-issue step in ``drop`` mode
inside the real pipeline.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import mlflow
import pytest

from tests.conftest import SAMPLE, TINY_MODEL, TINY_TRAIN, cli_env
from tests.integration.test_validate_cli import last_json, run_cli
from tests.interruption import signal_when

pytestmark = pytest.mark.integration

SEEDS = [42, 7, 123]
STEPS = 2  # TINY_TRAIN's train.max_steps
ARGS = ["train", "--config", "configs/default.yaml", "--data", str(SAMPLE), *TINY_TRAIN, *TINY_MODEL,
        "--set", f"train.soup_seeds={json.dumps(SEEDS)}", "--set", "data.label_issues=drop", "--json"]


def kill_at_second_member(home: Path) -> list[str]:
    """Start the soup, SIGKILL it when a 2nd member's final checkpoint is written; the run folders left."""
    runs = home / "runs"
    # save_checkpoint renames a finished folder into place: its state file means "saved".
    signal_when(ARGS, cli_env(home), lambda: len(list(runs.glob(f"*/checkpoint-{STEPS}/trainer_state.json"))) >= 2,
                signal.SIGKILL, home.parent / "killed.log", what="two members' final checkpoints")
    return sorted(path.name for path in runs.iterdir())


@pytest.fixture(scope="module")
def souped(tmp_path_factory):
    home = tmp_path_factory.mktemp("soup") / "home"
    left = kill_at_second_member(home)
    proc = run_cli(home, *ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc)
    mlflow.set_tracking_uri(result["tracking_uri"])
    return result, mlflow.MlflowClient(), home, left


def test_one_model_from_three_members(souped):
    result, client, *_ = souped
    assert result["train"]["soup"]["seeds"] == SEEDS
    assert [m["seed"] for m in result["train"]["soup"]["members"]] == SEEDS
    assert result["train"]["steps"] == 2 * len(SEEDS)
    assert result["model_version"] == "1"  # one registered model, not one per member
    version = client.get_model_version(result["registered_model"], "1")
    assert version.tags["soup_seeds"] == "42,7,123"


def test_a_killed_soup_resumes_its_finished_members_at_their_end(souped):
    result, _, home, left = souped
    # The first member's step had finished and still kept its final checkpoint (until registration); the
    # second was killed as it saved.
    assert len(left) == 2
    members = {m["run_key"]: m for m in result["train"]["soup"]["members"]}
    assert set(left) < set(members) and len(members) == len(SEEDS)
    for key in left:
        assert members[key]["resumed_from"] == members[key]["steps"] == STEPS  # no step trained again
    assert [m["resumed_from"] for key, m in members.items() if key not in left] == [0]
    # The soup is registered now, so its members' folders are released: an identical rerun trains afresh.
    assert not list((home / "runs").iterdir())


def test_mlflow_run_lists_members_with_their_per_language_f1(souped):
    result, client, *_ = souped
    run = client.get_run(result["mlflow_run_id"])
    for seed in SEEDS:
        for language in result["per_language"]:
            assert f"seed{seed}_f1_{language}" in run.data.metrics, (seed, language)
    assert run.data.metrics["f1_macro_avg"] == pytest.approx(result["f1_macro_avg"])  # the soup's own
    members = json.loads(open(client.download_artifacts(run.info.run_id, "soup/member_f1.json")).read())
    assert list(members) == [f"seed{seed}" for seed in SEEDS]


def test_gate_uses_the_members_measured_seed_spread_and_says_so(souped):
    result, *_ = souped
    rule = result["decision"]["rule"]
    assert rule["seed_noise_source"] == "measured on 3 soup members"


def test_label_issues_are_logged_and_flagged_train_rows_dropped(souped):
    result, client, *_ = souped
    path = client.download_artifacts(result["mlflow_run_id"], "data/label_issues.json")
    issues = json.loads(open(path).read())
    assert issues["mode"] == "drop"
    assert issues["train_rows_changed"] == issues["per_split"]["train"]["flagged"]
    assert client.get_run(result["mlflow_run_id"]).data.metrics["label_issues_flagged"] == issues["flagged"]
