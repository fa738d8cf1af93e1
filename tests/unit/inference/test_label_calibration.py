"""Per-language calibration: prior offsets fitted on val rows, saved with the model, applied when scoring."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from sentibridge.inference.label_calibration import (
    CALIBRATION_FILE,
    apply_offsets,
    calibrated,
    calibration_rows,
    fit_offsets,
    load_offsets,
    prior_offsets,
    save_offsets,
    score_calibrated,
)
from sentibridge.inference.predict import predict_rows
from sentibridge.labels import SCORE_COLUMNS


def _leaning(n: int, seed: int, lean: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of a model that ranks rows well but adds ``lean`` to label 1's log-score."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(0.0, 1.0, (n, 3))
    logits[np.arange(n), y] += 2.0
    logits[:, 1] += lean
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True), y


def test_prior_offsets_match_the_label_shares_and_undo_a_lean():
    probs, y = _leaning(3000, seed=0)
    offsets = prior_offsets(probs, y)
    assert offsets[0] == 0.0 and offsets[1] < -0.5  # the neutral lean is taken back
    fixed = apply_offsets(probs, ["en"] * len(y), {"en": offsets.tolist()})
    np.testing.assert_allclose(fixed.mean(axis=0), np.bincount(y) / len(y), atol=1e-3)
    before = f1_score(y, probs.argmax(axis=1), average="macro")
    after = f1_score(y, fixed.argmax(axis=1), average="macro")
    assert after > before + 0.05


def test_offsets_of_an_unbiased_model_are_small():
    probs, y = _leaning(3000, seed=1, lean=0.0)
    assert np.abs(prior_offsets(probs, y)).max() < 0.2


def test_offsets_are_per_language_and_other_languages_stay_raw():
    en, y_en = _leaning(600, seed=2, lean=2.0)
    de, y_de = _leaning(600, seed=3, lean=-2.0)  # leans away from neutral: the opposite offset
    probs = np.vstack([en, de])
    languages = ["en"] * 600 + ["de"] * 600
    offsets = fit_offsets(probs, languages, np.concatenate([y_en, y_de]))
    assert set(offsets) == {"de", "en"} and offsets["en"][1] < 0 < offsets["de"][1]
    only_en = apply_offsets(probs, languages, {"en": offsets["en"]})
    np.testing.assert_array_equal(only_en[600:], de)  # no offsets: untouched
    np.testing.assert_allclose(only_en.sum(axis=1), 1.0)
    assert not np.allclose(only_en[:600], en)


def test_calibration_rows_keep_languages_with_enough_rows_and_every_label():
    rows = pd.DataFrame({
        "language": ["en"] * 6 + ["de"] * 6 + ["hi"] * 2,
        "label": [0, 1, 2, 0, 1, 2] + [0, 0, 2, 2, 0, 2] + [0, 1],
    })
    kept = calibration_rows(rows, min_rows=3)
    assert set(kept["language"]) == {"en"}  # de lacks neutral rows, hi has too few
    assert set(calibration_rows(rows, min_rows=7)["language"]) == set()
    assert calibration_rows(rows.iloc[:0], min_rows=3).empty


def test_offsets_round_trip_through_the_model_folder(tmp_path):
    assert load_offsets(tmp_path) == {}  # a model saved without calibration
    path = save_offsets(tmp_path, {"en": [0.0, -1.25, 0.5]})
    assert path.name == CALIBRATION_FILE and json.loads(path.read_text())["method"] == "prior"
    assert load_offsets(tmp_path) == {"en": [0.0, -1.25, 0.5]}


def test_calibrated_predictions_are_the_argmax_of_the_shifted_scores():
    table = pd.DataFrame({"id": ["a", "b"], "language": ["en", "de"], "label": [0, 0], "pred": [1, 1]})
    table[SCORE_COLUMNS] = [[0.3, 0.4, 0.3], [0.3, 0.4, 0.3]]
    out = calibrated(table, {"en": [0.0, -1.0, 0.0]})
    assert out["pred"].tolist() == [0, 1]  # ties go to the first label, as argmax does
    np.testing.assert_allclose(out.loc[0, SCORE_COLUMNS].to_numpy(dtype=float).sum(), 1.0)
    assert out.loc[1, SCORE_COLUMNS].tolist() == [0.3, 0.4, 0.3] and table["pred"].tolist() == [1, 1]


def _scorer(seen: list[int]):
    """A stand-in model: it leans to neutral in ``en`` only, and records how many rows it scored."""

    def score(rows: pd.DataFrame) -> pd.DataFrame:
        seen.append(len(rows))
        rng = np.random.default_rng(len(rows))
        logits = rng.normal(0.0, 1.0, (len(rows), 3))
        logits[np.arange(len(rows)), rows["label"].to_numpy()] += 2.0
        logits[:, 1] += np.where(rows["language"] == "en", 2.0, 0.0)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        out = rows[["id", "language", "label"]].copy()
        out["pred"] = probs.argmax(axis=1)
        out[SCORE_COLUMNS] = probs
        return out

    return score


def _rows(prefix: str, per_language: dict[str, int]) -> pd.DataFrame:
    languages = [lang for lang, n in per_language.items() for _ in range(n)]
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(len(languages))], "language": languages,
                         "label": [i % 3 for i in range(len(languages))]})


def test_score_calibrated_fits_on_val_and_calibrates_only_the_languages_it_could():
    seen: list[int] = []
    val, test = _rows("v", {"en": 300, "de": 300, "hi": 6}), _rows("t", {"en": 600, "de": 600, "hi": 60})
    scores = score_calibrated(_scorer(seen), test, val, "prior", min_rows=30)
    assert seen == [600, 1260] and scores.val_rows == 600  # hi's 6 val rows are never scored
    assert set(scores.offsets) == {"de", "en"} and scores.offsets["en"][1] < -1.0
    hi = scores.predictions["language"] == "hi"
    pd.testing.assert_frame_equal(scores.predictions[hi], scores.raw[hi])
    en = (scores.raw["language"] == "en").to_numpy()
    raw_f1 = f1_score(test["label"][en], scores.raw["pred"][en], average="macro")
    assert f1_score(test["label"][en], scores.predictions["pred"][en], average="macro") > raw_f1 + 0.05


def test_score_calibrated_without_calibration_scores_no_val_row():
    seen: list[int] = []
    val, test = _rows("v", {"en": 300}), _rows("t", {"en": 90})
    scores = score_calibrated(_scorer(seen), test, val, "none", min_rows=30)
    assert seen == [90] and scores.val_rows == 0 and scores.offsets == {}
    assert scores.predictions is scores.raw


@pytest.mark.parametrize("language", ["en", None])
def test_predict_rows_applies_the_offsets_of_the_row_language(gemma_tokenizer, tiny_gemma, language):
    rows = pd.DataFrame({"id": ["1", "2", "3"], "text": ["Great!", "ok", "Das ist schlecht."],
                         "language": [language, language, "de"], "label": [2, 1, 0]})
    model = tiny_gemma(0)
    raw = predict_rows(model, gemma_tokenizer, rows, 128, 4, "cpu", "fp32", progress=False)
    pushed = predict_rows(model, gemma_tokenizer, rows, 128, 4, "cpu", "fp32", progress=False,
                          offsets={"en": [0.0, 0.0, 30.0]})
    if language == "en":
        assert pushed["pred"].tolist()[:2] == [2, 2]
    else:  # a row without a language is served raw
        assert pushed["pred"].tolist()[:2] == raw["pred"].tolist()[:2]
    assert pushed["pred"].iloc[2] == raw["pred"].iloc[2]
    np.testing.assert_allclose(pushed[SCORE_COLUMNS].iloc[2], raw[SCORE_COLUMNS].iloc[2])
