"""The experiment grid with a fake runner: every cell once, finished runs reused, failures recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentibridge.config import Settings
from sentibridge.experiment.grid import (
    PREDICTIONS,
    RESULT,
    Outcome,
    collect,
    run_folder,
    run_grid,
)
from sentibridge.experiment.plan import Plan, Recipe, settings_digest
from sentibridge.statistics import macro_f1

LANGUAGES = ("de", "en", "hi")
ROWS_PER_LANGUAGE = 40


def sample_rows() -> pd.DataFrame:
    """3 languages x 40 rows, labels 0/1/2 (negative/neutral/positive)."""
    rng = np.random.default_rng(0)
    n = ROWS_PER_LANGUAGE * len(LANGUAGES)
    return pd.DataFrame({
        "id": [f"{lang}-{i:03d}" for lang in LANGUAGES for i in range(ROWS_PER_LANGUAGE)],
        "language": np.repeat(LANGUAGES, ROWS_PER_LANGUAGE),
        "label": rng.integers(0, 3, n),
    })


def outcome(rows: pd.DataFrame, accuracy: float, seed: int) -> Outcome:
    """Predictions right on about ``accuracy`` of the rows; the same (accuracy, seed) gives the same ones."""
    rng = np.random.default_rng([seed, round(1000 * accuracy)])
    y = rows["label"].to_numpy()
    wrong = (y + rng.integers(1, 3, len(y))) % 3
    pred = np.where(rng.random(len(y)) < accuracy, y, wrong)
    frame = rows.assign(pred=pred, text="unused")  # extra columns are not stored
    per_language = {lang: macro_f1(y[m], pred[m]) for lang in LANGUAGES if (m := (rows["language"] == lang).to_numpy()).any()}
    return Outcome(frame, per_language, float(np.mean(list(per_language.values()))), run_name=f"run-{seed}")


class FakeRunner:
    """Settings -> Outcome, with accuracy set by ``lora.r`` (``accuracy``), recording every call.

    ``fail`` maps (lora.r, seed) to the exception that cell raises.
    """

    def __init__(self, accuracy: dict[int, float] | None = None, fail: dict[tuple[int, int], BaseException] | None = None,
                 rows: Callable[[Settings], pd.DataFrame] | None = None) -> None:
        self.accuracy = accuracy or {16: 0.5, 64: 0.9}
        self.fail = fail or {}
        self.rows = rows or (lambda settings: sample_rows())
        self.calls: list[tuple[int, int]] = []

    def __call__(self, settings: Settings) -> Outcome:
        cell = (settings.lora.r, settings.train.seed)
        self.calls.append(cell)
        if cell in self.fail:
            raise self.fail[cell]
        return outcome(self.rows(settings), self.accuracy[settings.lora.r], settings.train.seed)


def two_by_two(big: str = "lora.r=64", seeds: tuple[int, ...] = (42, 7)) -> Plan:
    return Plan("t", (Recipe("ref", None), Recipe("big", None, (big,))), seeds)


def _run(plan: Plan, out: Path, runner) -> tuple[list, list[str]]:
    lines: list[str] = []
    return run_grid(plan, out, runner, report=lines.append), lines


def test_every_recipe_and_seed_runs_once_with_one_progress_line_each(tmp_path):
    runner = FakeRunner()
    records, lines = _run(two_by_two(), tmp_path, runner)
    assert runner.calls == [(16, 42), (64, 42), (16, 7), (64, 7)]  # seed-major
    assert [(r.recipe, r.seed) for r in records] == [("ref", 42), ("big", 42), ("ref", 7), ("big", 7)]
    assert all(r.ok and not r.reused for r in records)
    assert len(lines) == 4
    assert lines[0].startswith("[1/4] ref seed 42: mean F1 ") and lines[3].startswith("[4/4] big seed 7: mean F1 ")
    assert all("\n" not in line and "weakest" in line for line in lines)
    for record in records:
        folder = run_folder(tmp_path, record.recipe, record.seed)
        stored = json.loads((folder / RESULT).read_text())
        assert stored["status"] == "ok" and stored["f1_macro_avg"] == pytest.approx(record.f1_macro_avg)
        assert stored["digest"] == settings_digest(Recipe(record.recipe, None, (
            ("lora.r=64",) if record.recipe == "big" else ())).settings(record.seed))
        predictions = record.predictions(tmp_path)
        assert list(predictions.columns) == ["id", "language", "label", "pred"]
        assert len(predictions) == ROWS_PER_LANGUAGE * len(LANGUAGES)
    # The stored score is the runner's, and the better recipe shows it.
    assert records[1].f1_macro_avg > records[0].f1_macro_avg + 0.2


def test_a_second_run_reuses_every_finished_run(tmp_path):
    first, _ = _run(two_by_two(), tmp_path, FakeRunner())
    runner = FakeRunner()
    again, lines = _run(two_by_two(), tmp_path, runner)
    assert runner.calls == []
    assert all(r.reused and r.ok for r in again) and all(line.endswith("(reused)") for line in lines)
    assert [r.per_language for r in again] == [r.per_language for r in first]
    assert [r.run_name for r in again] == ["run-42", "run-42", "run-7", "run-7"]


def test_a_changed_recipe_is_rerun_and_the_others_reused(tmp_path):
    _run(two_by_two(), tmp_path, FakeRunner())
    runner = FakeRunner(accuracy={16: 0.5, 32: 0.7})
    records, lines = _run(two_by_two(big="lora.r=32"), tmp_path, runner)
    assert runner.calls == [(32, 42), (32, 7)]
    assert [r.reused for r in records] == [True, False, True, False]
    assert not lines[1].endswith("(reused)") and lines[2].endswith("(reused)")


def test_a_failing_run_is_recorded_in_one_line_and_the_grid_goes_on(tmp_path):
    runner = FakeRunner(fail={(64, 42): RuntimeError("CUDA out of memory\nwith a long traceback")})
    records, lines = _run(two_by_two(), tmp_path, runner)
    assert runner.calls == [(16, 42), (64, 42), (16, 7), (64, 7)]
    assert [r.status for r in records] == ["ok", "failed", "ok", "ok"]
    assert records[1].error == "RuntimeError: CUDA out of memory"
    assert "failed" in lines[1] and "RuntimeError: CUDA out of memory" in lines[1] and "traceback" not in lines[1]
    folder = run_folder(tmp_path, "big", 42)
    assert json.loads((folder / RESULT).read_text())["status"] == "failed"
    assert not (folder / PREDICTIONS).exists()
    # The next run retries only the failed cell.
    retry = FakeRunner()
    records, _ = _run(two_by_two(), tmp_path, retry)
    assert retry.calls == [(64, 42)] and all(r.ok for r in records)


def test_an_interrupt_propagates_and_keeps_the_finished_runs(tmp_path):
    runner = FakeRunner(fail={(16, 7): KeyboardInterrupt()})
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_grid(two_by_two(), tmp_path, runner, report=lines.append)
    assert runner.calls == [(16, 42), (64, 42), (16, 7)]  # stopped at once: (64, 7) never ran
    assert len(lines) == 2
    assert not (run_folder(tmp_path, "ref", 7) / RESULT).exists()  # the interrupted run is not "finished"
    assert [(r.recipe, r.seed) for r in collect(two_by_two(), tmp_path)] == [("ref", 42), ("big", 42)]
    resumed = FakeRunner()
    records, _ = _run(two_by_two(), tmp_path, resumed)
    assert resumed.calls == [(16, 7), (64, 7)]
    assert [r.reused for r in records] == [True, True, False, False]


def test_collect_keeps_failures_and_drops_runs_of_other_settings(tmp_path):
    _run(two_by_two(), tmp_path, FakeRunner(fail={(64, 7): ValueError("bad")}))
    collected = collect(two_by_two(), tmp_path)
    assert [(r.recipe, r.seed, r.status) for r in collected] == [
        ("ref", 42, "ok"), ("big", 42, "ok"), ("ref", 7, "ok"), ("big", 7, "failed")]
    assert collected[3].error == "ValueError: bad"
    # Stored runs of a recipe whose settings changed since are not this plan's.
    assert [r.recipe for r in collect(two_by_two(big="lora.r=32"), tmp_path)] == ["ref", "ref"]


@pytest.mark.parametrize("damage", ["corrupt_result", "no_predictions"])
def test_a_damaged_run_is_not_taken_as_finished(tmp_path, damage):
    _run(two_by_two(seeds=(42,)), tmp_path, FakeRunner())
    folder = run_folder(tmp_path, "big", 42)
    if damage == "corrupt_result":
        (folder / RESULT).write_text('{"status": "ok", "dig', encoding="utf-8")
    else:
        (folder / PREDICTIONS).unlink()
    runner = FakeRunner()
    records, _ = _run(two_by_two(seeds=(42,)), tmp_path, runner)
    assert runner.calls == [(64, 42)] and all(r.ok for r in records)
