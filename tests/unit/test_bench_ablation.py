"""The pure helpers of bench/ablation.py: the simulated low-resource split and the statistics over seeds."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sentibridge.config_loading import load_settings


@pytest.fixture(scope="module")
def ablation(import_bench):
    return import_bench("ablation")


def _run(low: float, high: float) -> dict[str, float]:
    """One run's per-language F1 with the given low- and high-resource means."""
    return {"hi": low - 0.02, "ar": low + 0.02, "en": high + 0.01, "de": high - 0.01}


def test_gap_closed_and_its_interval_over_seeds(ablation):
    # none: gaps 0.10, 0.12, 0.08 (mean 0.10); retrieval: 0.05, 0.07, 0.03 (mean 0.05), same high mean.
    runs = {
        "none": {1: _run(0.60, 0.70), 2: _run(0.58, 0.70), 3: _run(0.62, 0.70)},
        "retrieval_minilm": {1: _run(0.65, 0.70), 2: _run(0.63, 0.70), 3: _run(0.67, 0.70)},
    }
    summary = ablation.ablation_summary(runs, default="retrieval_minilm")
    closed = summary["variants"]["retrieval_minilm"]["gap_closed"]
    assert closed["mean"] == pytest.approx(0.5)
    # Pooled seed sd 0.02 on 4 df: half-width t(0.975, 4) * 0.02 * sqrt(2/3) = 0.0453 of F1, over the 0.10 gap.
    assert closed["ci_low"] == pytest.approx(0.5 - 0.4533, abs=1e-3)
    assert closed["ci_high"] == pytest.approx(0.5 + 0.4533, abs=1e-3)
    assert summary["gap_closed"] == pytest.approx(0.5) and summary["high_resource_drop"] == 0.0
    assert summary["seed_sd"]["gap"]["sd"] == pytest.approx(0.02) and summary["seed_sd"]["gap"]["df"] == 4
    assert summary["goal"]["met"] is True and summary["goal"]["met_by"] == ["retrieval_minilm"]
    assert summary["variants"]["none"]["per_language_mean"]["hi"] == pytest.approx(0.58)


def test_an_interval_through_zero_or_a_high_resource_cost_misses_the_goal(ablation):
    noisy = {
        "none": {1: _run(0.60, 0.70), 2: _run(0.50, 0.70), 3: _run(0.70, 0.70)},  # gap sd 0.10
        "retrieval_minilm": {1: _run(0.64, 0.70), 2: _run(0.54, 0.70), 3: _run(0.74, 0.70)},
    }
    summary = ablation.ablation_summary(noisy, default="retrieval_minilm")
    assert summary["gap_closed"] == pytest.approx(0.4)  # above 30%, but the interval reaches below zero
    assert summary["gap_closed_interval"][0] < 0 and summary["goal"]["met"] is False

    costly = {
        "none": {1: _run(0.60, 0.70), 2: _run(0.58, 0.70), 3: _run(0.62, 0.70)},
        "retrieval_minilm": {1: _run(0.64, 0.68), 2: _run(0.62, 0.68), 3: _run(0.66, 0.68)},
    }
    summary = ablation.ablation_summary(costly, default="retrieval_minilm")
    assert summary["high_resource_drop"] == pytest.approx(0.02) and summary["goal"]["met"] is False


def test_a_wider_gap_counts_as_negative_and_an_off_default_reports_the_best(ablation):
    runs = {
        "none": {1: _run(0.60, 0.70), 2: _run(0.60, 0.70)},
        "retrieval_minilm": {1: _run(0.55, 0.70), 2: _run(0.55, 0.70)},
        "retrieval_e5": {1: _run(0.62, 0.70), 2: _run(0.62, 0.70)},
    }
    summary = ablation.ablation_summary(runs, default="none")
    assert summary["variants"]["retrieval_minilm"]["gap_closed"]["mean"] == pytest.approx(-0.5)
    assert summary["reported_variant"] == "retrieval_e5"
    assert summary["gap_closed"] == pytest.approx(0.2)


def test_more_seeds_detect_smaller_effects(ablation):
    three, six = ablation.detectable_effect(0.02, 10, 3), ablation.detectable_effect(0.02, 25, 6)
    assert 0 < six < three
    # Two-sided 5%, 80% power, large df: about 2.8 standard errors of the difference.
    assert ablation.detectable_effect(1.0, 10_000, 2) == pytest.approx(2.80, abs=0.01)


def test_default_variant_follows_the_config(ablation, tmp_path):
    assert ablation.default_variant(load_settings(None, ["augment.enabled=false"])) == "none"
    assert ablation.default_variant(load_settings(None, ["augment.enabled=true"])) == "retrieval_minilm"
    e5 = ["augment.enabled=true", "embedding.model=embedded:multilingual-e5-small"]
    assert ablation.default_variant(load_settings(None, e5)) == "retrieval_e5"
    assert ablation.default_variant(load_settings(None, ["augment.enabled=true", "demonstrations.k=2"])) == "retrieval_demos"


def test_simulated_dataset_shrinks_low_languages_and_pools_the_rest(ablation):
    rows = []
    for lang in ("hi", "ar", "en", "de"):
        for i in range(100):
            rows.append({"id": f"{lang}{i}", "text": f"{lang} sentence {i}", "label": i % 3, "label_raw": str(i % 3),
                         "language": lang, "language_raw": lang, "split": "train" if i < 80 else "test",
                         "source": "x", "line": i})
    data, pool = ablation.simulated_dataset(pd.DataFrame(rows), high_rows=30, seed=0)
    train = data[data["split"] == "train"].groupby("language").size().to_dict()
    assert train == {"hi": 4, "ar": 4, "en": 30, "de": 30}  # 5% of 80, and the high subset
    assert set(pool["language"]) == {"hi", "ar"} and len(pool) == 2 * 76
    assert "label" not in pool.columns
    assert not set(pool["text"]) & set(data["text"])  # the pool never holds train, val or test text


def test_saved_runs_are_read_back_and_missing_ones_are_none(ablation, tmp_path):
    assert ablation.saved_run(tmp_path, "none", 42) is None
    (tmp_path / "none_seed42.json").write_text('{"variant": "none", "seed": 42, "f1": {"en": 0.6}}')
    assert ablation.saved_run(tmp_path, "none", 42)["f1"] == {"en": 0.6}
    assert ablation.saved_run(tmp_path, "none", 7) is None


def test_a_labeler_not_trained_or_from_a_lost_home_is_refused_with_a_reason(ablation, tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    assert ablation.labeler_path(tmp_path / "home", runs, 123) is None
    assert "has not been trained yet" in capsys.readouterr().out
    lost = {"variant": "none", "seed": 123, "tracking_uri": f"sqlite:///{tmp_path / 'gone' / 'mlflow.db'}"}
    (runs / "none_seed123.json").write_text(json.dumps(lost))
    assert ablation.labeler_path(tmp_path / "home", runs, 123) is None
    out = capsys.readouterr().out
    assert "home that no longer exists" in out and "none_seed123.json" in out
