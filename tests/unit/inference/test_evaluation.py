"""Per-language metrics, plots and tables on a toy prediction table."""

from __future__ import annotations

import numpy as np
import pytest

import matplotlib.pyplot as plt

from sentibridge.inference.evaluation import (
    evaluate_predictions,
    f1_vs_reference_figure,
    plot_confusion_matrices,
    plot_f1_by_language,
    plot_f1_vs_reference,
    results_table,
)

LANGS = ["en"] * 6 + ["ar"] * 3
TRUE = [0, 1, 2, 0, 1, 2, 0, 2, 2]
PRED = [0, 1, 2, 0, 1, 2, 0, 0, 2]


def test_metrics_per_language_and_average():
    report = evaluate_predictions(LANGS, TRUE, PRED)
    m = report.metrics
    assert m["f1_en"] == pytest.approx(1.0) and m["accuracy_en"] == pytest.approx(1.0)
    # ar: labels {0, 2}; class 0: P=1/2 R=1 F1=2/3; class 2: P=1 R=1/2 F1=2/3.
    assert m["f1_ar"] == pytest.approx(2 / 3)
    assert m["accuracy_ar"] == pytest.approx(2 / 3)
    assert m["f1_macro_avg"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["support_ar"] == 3
    np.testing.assert_array_equal(report.confusion["ar"], [[1, 0, 0], [0, 0, 0], [1, 0, 1]])
    assert list(report.table["language"]) == ["ar", "en"]


def test_metrics_match_sklearn_on_random_predictions():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = np.random.default_rng(3)
    languages = rng.choice(["ar", "en", "hi"], 400)
    # Skewed draws, so that some language lacks a class in its labels or predictions.
    true, pred = rng.choice(3, 400, p=[0.6, 0.05, 0.35]), rng.choice(3, 400, p=[0.5, 0.0, 0.5])
    report = evaluate_predictions(languages, true, pred)
    for language in ("ar", "en", "hi"):
        mine = languages == language
        assert report.metrics[f"f1_{language}"] == pytest.approx(f1_score(true[mine], pred[mine], average="macro", zero_division=0))
        assert report.metrics[f"accuracy_{language}"] == pytest.approx(accuracy_score(true[mine], pred[mine]))
        np.testing.assert_array_equal(report.confusion[language], confusion_matrix(true[mine], pred[mine], labels=[0, 1, 2]))
    assert report.metrics["accuracy_overall"] == pytest.approx(accuracy_score(true, pred))


def test_plots_and_tables(tmp_path):
    report = evaluate_predictions(LANGS, TRUE, PRED)
    for path in (plot_f1_by_language(report, tmp_path), plot_confusion_matrices(report, tmp_path)):
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
    markdown = results_table(report)
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()]
    assert cells[0] == ["language", "support", "accuracy", "macro-F1"]
    assert ["ar", "3", "0.667", "0.667"] in cells and cells[-1][:2] == ["overall", "9"]
    assert "<table" in results_table(report, fmt="html")
    with pytest.raises(ValueError):
        results_table(report, fmt="latex")


def test_empty_input_fails():
    with pytest.raises(ValueError):
        evaluate_predictions([], [], [])


def test_f1_vs_reference_shows_both_series_with_support_and_deltas(tmp_path):
    candidate, reference = {"en": 0.9, "fr": 0.479, "ar": 0.7}, {"en": 0.6, "fr": 0.5, "ar": 0.7}
    fig = f1_vs_reference_figure(candidate, reference, {"ar": 3, "en": 6, "fr": 4}, ("candidate v4", "champion v3"))
    try:
        ax = fig.axes[0]
        cand_bars, ref_bars = ax.containers
        assert [bar.get_height() for bar in cand_bars] == pytest.approx([0.7, 0.9, 0.479])  # ar, en, fr
        assert [bar.get_height() for bar in ref_bars] == pytest.approx([0.7, 0.6, 0.5])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["ar\nn=3", "en\nn=6", "fr\nn=4"]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["candidate v4", "champion v3"]
        deltas = {t.get_text(): t.get_color() for t in ax.texts}
        assert set(deltas) == {"+0.0", "+30.0", "-2.1"} and deltas["-2.1"] != deltas["+30.0"]  # drops stand out
    finally:
        plt.close(fig)
    # A language only one side scored gets one bar and no delta.
    fig = f1_vs_reference_figure({"en": 0.9, "hi": 0.4}, {"en": 0.6}, {"en": 6, "hi": 2})
    try:
        heights = [bar.get_height() for bar in fig.axes[0].containers[1]]
        assert heights[0] == pytest.approx(0.6) and np.isnan(heights[1])
        assert [t.get_text() for t in fig.axes[0].texts] == ["+30.0"]
    finally:
        plt.close(fig)
    path = plot_f1_vs_reference(candidate, reference, {"ar": 3, "en": 6, "fr": 4}, tmp_path / "gate")
    assert path.name == "f1_vs_reference.png" and path.read_bytes()[:4] == b"\x89PNG"

