"""`sentibridge experiment` end to end on the sample: 2 recipes x 2 seeds, a few steps each."""

from __future__ import annotations

import json
import signal

import mlflow
import pytest
import yaml

from tests.conftest import SAMPLE, TINY_MODEL, TINY_TRAIN, cli_env
from tests.integration.test_validate_cli import last_json, run_cli
from tests.interruption import signal_when

pytestmark = pytest.mark.integration


def _plan(folder, recipes: dict) -> str:
    tiny = {pair.split("=")[0]: yaml.safe_load(pair.split("=")[1]) for pair in [*TINY_TRAIN, *TINY_MODEL][1::2]}
    plan = {"name": "tiny", "base": "configs/default.yaml", "seeds": [42, 7],
            "set": {"data.path": str(SAMPLE), **tiny}, "recipes": recipes}
    path = folder / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")  # recipe order matters
    return str(path)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiment")
    plan = _plan(folder, {"reference": {}, "rank8": {"lora.r": 8, "lora.alpha": 16}})
    out = folder / "out"
    proc = run_cli(folder / "home", "experiment", "--plan", plan, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, plan, out, proc


def test_every_recipe_and_seed_runs_once_with_one_progress_line_each(experiment):
    _, _, out, proc = experiment
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in progress] == [
        "[1/4] reference seed 42", "[2/4] rank8 seed 42", "[3/4] reference seed 7", "[4/4] rank8 seed 7"]
    for recipe in ("reference", "rank8"):
        for seed in (42, 7):
            result = json.loads((out / "runs" / recipe / f"seed{seed}" / "result.json").read_text())
            assert result["status"] == "ok" and len(result["per_language"]) == 9
            assert result["extra"]["device"] == "cpu" and result["extra"]["train_precision"] in {"bf16", "fp32"}


def test_report_has_means_spreads_and_paired_intervals(experiment):
    _, _, out, proc = experiment
    report = json.loads((out / "report.json").read_text())
    assert last_json(proc)["comparisons"] == report["comparisons"]
    assert report["complete"] and report["seeds"] == [42, 7]
    assert set(report["recipes"]) == {"reference", "rank8"}
    languages = report["recipes"]["reference"]["per_language"]
    assert "mean" in languages and len(languages) == 10
    comparison = report["comparisons"]["rank8"]
    assert comparison["paired_seeds"] == [42, 7]
    for language in languages:
        row = comparison[language]
        assert row["low"] <= row["delta_points"] <= row["high"], language
        assert len(row["per_seed_points"]) == 2 and row["seed_noise"] == "measured"
        # Both noises together are (up to resampling luck) at least as wide as the test rows' alone.
        assert row["high"] - row["low"] >= 0.95 * (row["rows_interval"]["high"] - row["rows_interval"]["low"]) - 1e-9
        if language != "mean":
            assert row["p_holm"] >= row["p"]
    assert "## rank8 - reference" in (out / "report.md").read_text()


def test_one_mlflow_parent_run_with_a_child_per_run(experiment):
    folder, _, out, _ = experiment
    state = json.loads((out / "experiment.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'home' / 'mlflow' / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    parent = client.get_run(state["mlflow_parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.json", "report/report.md"} <= names


def test_a_rerun_reuses_every_finished_run(experiment):
    folder, plan, out, _ = experiment
    proc = run_cli(folder / "home", "experiment", "--plan", plan, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and all(line.endswith("(reused)") for line in progress)


def test_a_bad_recipe_is_one_line_naming_file_and_key_before_anything_trains(tmp_path):
    plan = _plan(tmp_path, {"reference": {}, "broken": {"lora.r": 0}})
    proc = run_cli(tmp_path / "home", "experiment", "--plan", plan, "--out", str(tmp_path / "out"))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert plan in lines[0] and "lora.r" in lines[0]
    assert not (tmp_path / "out" / "runs").exists()


def test_sigterm_stops_the_grid_as_ctrl_c_does(tmp_path):
    """`kill` (a scheduler's timeout, a pod's eviction) mid-training: not a failed run and on to the next."""
    steps = 2000
    plan = _plan(tmp_path, {"quick": {}, "long": {"train.max_steps": steps}})
    out, stdout, stderr = tmp_path / "out", tmp_path / "stdout.log", tmp_path / "stderr.log"
    code = signal_when(["experiment", "--plan", plan, "--out", str(out), "--json"], cli_env(tmp_path / "home"),
                       lambda: f"/{steps} [" in stderr.read_text(errors="replace"),  # the long run's progress bar
                       signal.SIGTERM, stdout, stderr, what="the second run's training")
    printed, errors = stdout.read_text(), stderr.read_text(errors="replace")
    assert code == 143, errors[-3000:]
    progress = [line for line in printed.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in progress] == ["[1/4] quick seed 42"]  # the interrupted run is not "failed"
    assert [line for line in errors.splitlines() if line.startswith("error:")] == ["error: terminated"]
    assert json.loads(printed.strip().splitlines()[-1]) == {"ok": False, "error": "terminated"}
    assert json.loads((out / "runs" / "quick" / "seed42" / "result.json").read_text())["status"] == "ok"
    assert not (out / "runs" / "long" / "seed42" / "result.json").exists()  # a rerun trains it
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is False and list(report["recipes"]) == ["quick"]
