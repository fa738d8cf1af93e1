"""The experiment report: per-recipe means and seed spreads, and differences with both noises.

Runs come from ``run_grid`` with the fake runner of test_grid (tiny synthetic predictions), so
the report reads exactly what a real grid stores.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from sklearn.metrics import f1_score

from sentibridge.config import GateConfig
from sentibridge.experiment.analysis import MEAN, analyse, markdown
from sentibridge.experiment.driver import run_experiment
from sentibridge.experiment.grid import run_grid
from sentibridge.experiment.plan import Plan, Recipe
from sentibridge.statistics import holm, seeds_needed
from tests.unit.experiment.test_grid import (
    LANGUAGES,
    FakeRunner,
    outcome,
    sample_rows,
    two_by_two,
)

RULE = GateConfig(bootstrap_resamples=300)


def _report(tmp_path, runner, plan: Plan | None = None, rule: GateConfig = RULE, effect: float = 1.0) -> dict:
    plan = plan or two_by_two(seeds=(42, 7, 123))
    records = run_grid(plan, tmp_path, runner, report=lambda line: None)
    return analyse(records, tmp_path, plan.recipes[0].name, rule, effect)


def test_a_clearly_better_recipe_has_a_positive_delta_beyond_both_noises(tmp_path):
    report = _report(tmp_path, FakeRunner({16: 0.5, 64: 0.9}))
    assert report["reference"] == "ref" and report["test_rows"] == 120 and report["left_out"] == []
    comparison = report["comparisons"]["big"]
    assert set(comparison) == {"paired_seeds", *LANGUAGES, MEAN}
    assert comparison["paired_seeds"] == [42, 7, 123]
    for key in [*LANGUAGES, MEAN]:
        d = comparison[key]
        assert d["delta_points"] > 20
        assert 0 < d["low"] < d["delta_points"] < d["high"]
        assert d["rows_interval"]["low"] > 0 and d["seed_noise"] == "measured"
        assert d["significant"] and d["p"] < 0.05
    assert "ref" not in report["comparisons"]  # the reference is not compared with itself


def test_delta_is_the_difference_of_the_seed_means_of_sklearns_macro_f1(tmp_path):
    """An independent recomputation from the stored predictions, with sklearn."""
    plan = two_by_two(seeds=(42, 7, 123))
    records = run_grid(plan, tmp_path, FakeRunner({16: 0.5, 64: 0.7}), report=lambda line: None)
    report = analyse(records, tmp_path, "ref", RULE, 1.0)

    def f1(recipe: str, seed: int, lang: str) -> float:
        frame = next(r for r in records if (r.recipe, r.seed) == (recipe, seed)).predictions(tmp_path)
        frame = frame[frame["language"] == lang]
        return f1_score(frame["label"], frame["pred"], average="macro", zero_division=0)

    for lang in LANGUAGES:
        per_seed = [100 * (f1("big", s, lang) - f1("ref", s, lang)) for s in plan.seeds]
        d = report["comparisons"]["big"][lang]
        assert d["delta_points"] == pytest.approx(np.mean(per_seed))
        assert d["per_seed_points"] == pytest.approx(per_seed)
        assert (d["seeds_interval"]["low"], d["seeds_interval"]["high"]) == pytest.approx(
            np.mean(per_seed) + np.array([-1, 1]) * 4.302653 * np.std(per_seed, ddof=1) / math.sqrt(3), rel=1e-5)
        cell = report["recipes"]["big"]["per_language"][lang]
        assert cell["f1"] == pytest.approx(np.mean([f1("big", s, lang) for s in plan.seeds]))
        assert cell["sd_points"] == pytest.approx(100 * statistics.stdev([f1("big", s, lang) for s in plan.seeds]))
    mean_cell = report["recipes"]["ref"]["per_language"][MEAN]
    assert mean_cell["f1"] == pytest.approx(np.mean([f1("ref", s, lang) for s in plan.seeds for lang in LANGUAGES]))
    assert list(mean_cell["per_seed"]) == [42, 7, 123]


def test_identical_recipes_differ_by_exactly_zero(tmp_path):
    report = _report(tmp_path, FakeRunner({16: 0.6, 64: 0.6}))
    for key in [*LANGUAGES, MEAN]:
        d = report["comparisons"]["big"][key]
        assert d["delta_points"] == 0 and d["per_seed_points"] == [0, 0, 0]
        assert d["low"] == d["high"] == 0 and d["p"] == 1.0 and not d["significant"]
    assert report["recipes"]["big"]["per_language"] == report["recipes"]["ref"]["per_language"]


def test_identical_recipes_at_one_seed_carry_the_configured_seed_noise(tmp_path):
    """One paired seed measures no spread: the gate's seed_std stands in, and the interval is not zero-width."""
    rule = GateConfig(bootstrap_resamples=300, seed_std=4.0, seed_std_mean=2.0)
    report = _report(tmp_path, FakeRunner({16: 0.6, 64: 0.6}), two_by_two(seeds=(42,)), rule)
    comparison = report["comparisons"]["big"]
    for key, sd in [(LANGUAGES[0], 4.0), (MEAN, 2.0)]:
        d = comparison[key]
        assert d["seed_noise"] == "configured" and d["seed_sd_points"] == pytest.approx(math.sqrt(2) * sd)
        assert d["low"] < 0 < d["high"] and not d["significant"]
        assert d["high"] - d["low"] == pytest.approx(2 * 1.96 * math.sqrt(2) * sd, rel=0.2)
    assert report["seed_noise"] is None  # no recipe has two seeds
    assert "configured gate.seed_std" in markdown({"name": "t", **report})


def test_holm_adjusts_the_language_p_values(tmp_path):
    report = _report(tmp_path, FakeRunner({16: 0.55, 64: 0.65}))
    comparison = report["comparisons"]["big"]
    raw = {lang: comparison[lang]["p"] for lang in LANGUAGES}
    assert {lang: comparison[lang]["p_holm"] for lang in LANGUAGES} == pytest.approx(holm(raw))
    for lang in LANGUAGES:
        assert comparison[lang]["p_holm"] >= comparison[lang]["p"]
        assert comparison[lang]["significant"] == (comparison[lang]["p_holm"] < 1 - RULE.confidence)
    assert "p_holm" not in comparison[MEAN]  # one test, nothing to correct


def test_every_recipe_has_a_mean_row_and_the_pooled_seed_noise(tmp_path):
    report = _report(tmp_path, FakeRunner({16: 0.5, 64: 0.9}))
    for recipe in ("ref", "big"):
        summary = report["recipes"][recipe]
        assert list(summary["per_language"]) == [*LANGUAGES, MEAN]
        assert summary["seeds"] == [42, 7, 123] and summary["failed"] == []
    assert report["seed_noise"]["degrees_of_freedom"] == 4  # (3 - 1) per recipe


def test_seeds_needed_follows_the_effect_and_the_measured_noises(tmp_path):
    """40 rows a language hide a 1-point effect whatever the seeds (None); 30 points need few seeds."""
    small = _report(tmp_path, FakeRunner({16: 0.5, 64: 0.9}), effect=1.0)["comparisons"]["big"]
    large = _report(tmp_path, FakeRunner({16: 0.5, 64: 0.9}), effect=30.0)["comparisons"]["big"]
    for key in [*LANGUAGES, MEAN]:
        assert small[key]["rows_sd_points"] > 1.0 / 2.8 and small[key]["seeds_needed"] is None
        d = large[key]
        assert d["seeds_needed"] == seeds_needed(30.0, d["seed_sd_points"], d["rows_sd_points"], 0.95, 0.8) >= 1


def test_runs_scored_on_other_test_rows_are_left_out(tmp_path):
    def rows(settings):
        frame = sample_rows()
        return frame.iloc[:-5] if (settings.lora.r, settings.train.seed) == (64, 7) else frame

    report = _report(tmp_path, FakeRunner({16: 0.5, 64: 0.9}, rows=rows))
    assert [tuple(key) for key in report["left_out"]] == [("big", 7)]
    assert report["test_rows"] == 120
    assert report["recipes"]["big"]["seeds"] == [42, 123]
    assert report["comparisons"]["big"]["paired_seeds"] == [42, 123]
    assert "Left out (scored other test rows): big seed 7" in markdown({"name": "t", **report})


def test_failed_runs_are_listed_and_left_out_of_the_numbers(tmp_path):
    report = _report(tmp_path, FakeRunner({16: 0.5, 64: 0.9}, fail={(64, 7): RuntimeError("disk full")}))
    assert report["recipes"]["big"]["failed"] == [{"seed": 7, "error": "RuntimeError: disk full"}]
    assert report["recipes"]["big"]["seeds"] == [42, 123]
    assert report["comparisons"]["big"]["paired_seeds"] == [42, 123]
    text = markdown({"name": "t", **report})
    assert "## Failed runs" in text and "- big seed 7: RuntimeError: disk full" in text


def test_nothing_finished_gives_an_empty_report(tmp_path):
    runner = FakeRunner(fail={cell: ValueError("no") for cell in [(16, 42), (64, 42)]})
    report = _report(tmp_path, runner, two_by_two(seeds=(42,)))
    assert report["test_rows"] == 0 and report["comparisons"] == {} and report["recipes"] == {}
    assert "No finished run yet." in markdown({"name": "t", **report})


def test_markdown_shows_every_recipe_and_comparison(tmp_path):
    report = _report(tmp_path, FakeRunner({16: 0.5, 64: 0.9}))
    text = markdown({"name": "ranks", **report})
    assert text.startswith("# Experiment ranks")
    assert "ref (3 seeds)" in text and "big (3 seeds)" in text
    assert "## big - ref (points)" in text
    mean_line = next(line for line in text.splitlines() if line.startswith("| mean") and "[" in line)
    assert f"{report['comparisons']['big'][MEAN]['delta_points']:+.2f}" in mean_line and "✓" in mean_line


def test_markdown_names_runs_trained_at_another_precision(tmp_path):
    report = _report(tmp_path, FakeRunner({16: 0.5, 64: 0.9}))
    assert "different precisions" not in markdown({"name": "same", **report})  # none recorded: one kind
    for run in report["runs"]:
        run["extra"] = {**run.get("extra", {}), "train_precision": "fp32" if (run["recipe"], run["seed"]) == ("big", 7) else "bf16"}
    line = next(line for line in markdown({"name": "mixed", **report}).splitlines() if "different precisions" in line)
    assert line.endswith("bf16: ref seed 42, big seed 42, ref seed 7, ref seed 123, big seed 123; fp32: big seed 7.")


# --- driver ---------------------------------------------------------------------------------


def _driver_plan() -> Plan:
    cheap = ("gate.bootstrap_resamples=200",)
    return Plan("ranks", (Recipe("ref", None, cheap), Recipe("big", None, (*cheap, "lora.r=64"))), (42, 7))


def test_run_experiment_writes_both_reports(tmp_path, capsys):
    runner = FakeRunner()
    report = run_experiment(_driver_plan(), tmp_path / "out", effect=1.0, runner=runner)
    assert len(runner.calls) == 4 and report["complete"]
    assert "mlflow_parent_run_id" not in report  # a given runner keeps MLflow out of it
    stored = json.loads((tmp_path / "out" / "report.json").read_text())
    assert stored["name"] == "ranks" and stored["seeds"] == [42, 7] and stored["recipes_planned"] == ["ref", "big"]
    assert stored["comparisons"]["big"][MEAN]["delta_points"] == pytest.approx(
        report["comparisons"]["big"][MEAN]["delta_points"])
    assert stored["comparisons"]["big"][MEAN]["low"] > 0
    assert (tmp_path / "out" / "report.md").read_text().startswith("# Experiment ranks")
    printed = capsys.readouterr().out
    assert "2 recipes x 2 seeds" in printed and "[4/4] big seed 7:" in printed


def test_an_interrupt_mid_grid_still_writes_the_report_and_reraises(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(_driver_plan(), out, effect=1.0, runner=FakeRunner(fail={(16, 7): KeyboardInterrupt()}))
    stored = json.loads((out / "report.json").read_text())
    assert not stored["complete"]
    assert [(r["recipe"], r["seed"]) for r in stored["runs"]] == [("ref", 42), ("big", 42)]
    assert stored["comparisons"]["big"]["paired_seeds"] == [42]
    assert "big (1 seeds)" in (out / "report.md").read_text()
    # The resume runs only what the interrupt left.
    resumed = FakeRunner()
    report = run_experiment(_driver_plan(), out, effect=1.0, runner=resumed)
    assert resumed.calls == [(16, 7), (64, 7)] and report["complete"]


def test_report_only_rebuilds_from_stored_runs_without_running(tmp_path, capsys):
    out = tmp_path / "out"
    run_experiment(_driver_plan(), out, effect=1.0, runner=FakeRunner())
    runner = FakeRunner()
    report = run_experiment(_driver_plan(), out, effect=1.0, report_only=True, runner=runner)
    assert runner.calls == [] and report["complete"] and report["comparisons"]["big"]["paired_seeds"] == [42, 7]


def test_the_rows_bootstrap_averages_each_recipe_over_all_its_seeds(tmp_path):
    """'big' is much better at seed 42 only: the rows interval must sit around the seed mean, not seed 42's gain."""

    class OneLuckySeed(FakeRunner):
        def __call__(self, settings):
            self.calls.append((settings.lora.r, settings.train.seed))
            lucky = settings.lora.r == 64 and settings.train.seed == 42
            # Same noise stream for every cell but the lucky one: the other seeds of 'big' tie with 'ref'.
            return outcome(sample_rows(), 0.95 if lucky else 0.5, 0 if not lucky else 1)

    report = _report(tmp_path, OneLuckySeed())
    for key in [*LANGUAGES, MEAN]:
        d = report["comparisons"]["big"][key]
        assert d["per_seed_points"][1:] == [0, 0] and d["per_seed_points"][0] > 25
        assert d["delta_points"] == pytest.approx(d["per_seed_points"][0] / 3)
        rows = d["rows_interval"]
        assert rows["low"] < d["delta_points"] < rows["high"]
        assert (rows["low"] + rows["high"]) / 2 == pytest.approx(d["delta_points"], abs=4)
        assert rows["high"] < d["per_seed_points"][0]  # seed 42 alone would centre the interval there
