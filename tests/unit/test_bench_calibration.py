"""The pure helpers of bench/calibration.py: offsets fitted on val, applied to test, and their intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sentibridge.statistics import macro_f1


@pytest.fixture(scope="module")
def calibration(import_bench):
    return import_bench("calibration")


def _biased_scores(n: int, language: str, seed: int) -> pd.DataFrame:
    """Rows whose true label is usually the top score once 'neutral' loses a bias of 1.5 nats."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    logits = rng.normal(0.0, 1.0, size=(n, 3))
    logits[np.arange(n), y] += 2.0
    logits[:, 1] += 1.5  # every row leans to label 1
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(probs, columns=["score_negative", "score_neutral", "score_positive"])
    return frame.assign(label=y, language=language)


def test_both_methods_remove_a_bias_towards_one_label(calibration):
    rows = _biased_scores(600, "hi", seed=0)
    log_probs = np.log(rows[["score_negative", "score_neutral", "score_positive"]].to_numpy())
    y = rows["label"].to_numpy()
    for fit in (calibration.prior_offsets, calibration.f1_offsets):
        offsets = fit(log_probs, y)
        assert offsets[0] == 0.0
        assert -2.5 < offsets[1] < -0.5  # the fitted offset undoes most of the +1.5 lean
        assert macro_f1(y, np.argmax(log_probs + offsets, axis=1)) > macro_f1(y, np.argmax(log_probs, axis=1)) + 0.05


def test_prior_offsets_of_an_unbiased_model_are_small(calibration):
    rng = np.random.default_rng(1)
    y = np.arange(900) % 3
    logits = rng.normal(0.0, 1.0, size=(900, 3))
    logits[np.arange(900), y] += 2.0
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert np.abs(calibration.prior_offsets(log_probs, y)).max() < 0.3


def test_offsets_are_fitted_per_language_on_val_and_applied_to_test(calibration):
    val = pd.concat([_biased_scores(300, "hi", 2), _biased_scores(300, "en", 3).assign(score_neutral=1 / 3)])
    test = pd.concat([_biased_scores(300, "hi", 4), _biased_scores(300, "en", 5)], ignore_index=True)
    pred, offsets = calibration.calibrated_predictions(val, test, "prior")
    assert offsets["hi"][1] < -0.5
    assert offsets["en"] != offsets["hi"]
    base = np.argmax(calibration._log_probs(test), axis=1)
    hi = (test["language"] == "hi").to_numpy()
    y = test["label"].to_numpy()
    assert macro_f1(y[hi], pred[hi]) > macro_f1(y[hi], base[hi])


def test_mean_change_interval_holds_the_point_change(calibration):
    test = pd.concat([_biased_scores(150, "hi", 6), _biased_scores(150, "ar", 7)], ignore_index=True)
    base = np.argmax(calibration._log_probs(test), axis=1)
    better = test["label"].to_numpy().copy()
    result = calibration.mean_change(test, base, better)
    assert result["ci_low"] <= result["delta"] <= result["ci_high"]
    assert result["ci_low"] > 0
    same = calibration.mean_change(test, base, base)
    assert same == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_over_seeds_gives_a_t_interval_of_the_mean_change(calibration):
    def seed(change: float) -> dict:
        none = {"hi": 0.5, "en": 0.7}
        moved = {"hi": 0.5 + 2 * change, "en": 0.7}
        return {"f1": {"none": none, "prior": moved, "f1": none}}

    summary = calibration.over_seeds({1: seed(0.01), 2: seed(0.02), 3: seed(0.03)})
    assert summary["prior"]["mean_change_points"] == pytest.approx(2.0)
    assert summary["prior"]["per_language_change_points"] == pytest.approx({"hi": 4.0, "en": 0.0})
    assert summary["prior"]["ci_low"] < 2.0 < summary["prior"]["ci_high"]
    assert summary["f1"]["mean_change_points"] == pytest.approx(0.0)
    assert summary["none_mean_f1"] == pytest.approx(0.6)


def test_kept_seeds_come_from_the_same_config_only(calibration, tmp_path):
    import json

    out = tmp_path / "calibration.json"
    assert calibration.kept_seeds(out, "configs/umsab_cpu.yaml") == {}
    out.write_text(json.dumps({"config": "configs/umsab_cpu.yaml", "per_seed": {"42": {"f1": {}}, "7": {"f1": {}}}}))
    assert set(calibration.kept_seeds(out, "configs/umsab_cpu.yaml")) == {42, 7}
    assert calibration.kept_seeds(out, "configs/umsab_full.yaml") == {}
