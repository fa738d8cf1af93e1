"""bench/language_rows.py: one language's train rows varied, every other row as the pipeline picks it."""

from __future__ import annotations

import pandas as pd
import pytest

from sentibridge.config_loading import load_settings
from sentibridge.data.split import split_rows
from sentibridge.data.validation import validate_rows


@pytest.fixture(scope="module")
def language_rows(import_bench):
    return import_bench("language_rows")


def _rows() -> pd.DataFrame:
    rows = [{"id": f"{lang}-{i}", "text": f"{lang} tweet number {i} about topic {i * 7 % 13}", "label": i % 3,
             "language": lang, "split": "test" if i < 9 else None} for lang in ("hi", "en", "de") for i in range(60)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("count", ["0", "12", "all"])
def test_only_the_language_s_train_rows_change(language_rows, count):
    capped = ["data.max_rows_per_language=12"]
    settings = load_settings(language_rows.CONFIG, capped)
    varied = load_settings(language_rows.CONFIG, [*capped, *language_rows.row_overrides("hi", count)])
    rows = validate_rows(_rows(), settings.data).valid
    pipeline = split_rows(rows, settings.split, settings.data)
    data = split_rows(rows, varied.split, varied.data)
    # Other languages keep exactly the pipeline's capped rows; val and test are untouched.
    others = data.train["language"] != "hi"
    assert set(data.train.loc[others, "id"]) == set(pipeline.train.loc[pipeline.train["language"] != "hi", "id"])
    assert set(data.test["id"]) == set(pipeline.test["id"]) and set(data.val["id"]) == set(pipeline.val["id"])
    hindi = set(data.train.loc[~others, "id"])
    if count == "12":  # the pipeline's own pick
        assert hindi == set(pipeline.train.loc[pipeline.train["language"] == "hi", "id"])
    elif count == "0":
        assert not hindi
    else:
        assert len(hindi) > 12


def test_summary_averages_seeds(language_rows):
    runs = {"all": {1: {"hi": 0.40, "en": 0.70}, 2: {"hi": 0.50, "en": 0.72}}}
    row = language_rows.summary(runs, "hi")["all"]
    assert row["language_f1"] == pytest.approx(45.0)
    assert row["others_mean_f1"] == pytest.approx(71.0)
    assert row["mean_f1"] == pytest.approx(58.0)
    assert row["language_f1_sd"] == pytest.approx(7.0710678)


def test_baseline_runs_come_from_the_same_config(language_rows, tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text('{"config": "configs/umsab_cpu.yaml", "per_seed": {"42": {"cli_f1": {"hi": 0.55}}}}')
    assert language_rows.baseline_runs(path, [42, 7]) == {42: {"hi": 0.55}}
    path.write_text('{"config": "configs/default.yaml", "per_seed": {}}')
    with pytest.raises(SystemExit, match="default.yaml"):
        language_rows.baseline_runs(path, [42])
