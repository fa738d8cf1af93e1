"""Per-language metrics, plots and tables on a toy prediction table."""

from __future__ import annotations

import numpy as np
import pytest

from sentibridge.inference.evaluation import evaluate_predictions, plot_confusion_matrices, plot_f1_by_language, results_table

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


def test_plots_and_tables(tmp_path):
    report = evaluate_predictions(LANGS, TRUE, PRED)
    for path in (plot_f1_by_language(report, tmp_path), plot_confusion_matrices(report, tmp_path)):
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
    markdown = results_table(report)
    assert "| ar | 3 | 0.667 | 0.667 |" in markdown and markdown.splitlines()[-1].startswith("| overall | 9 |")
    assert "<table" in results_table(report, fmt="html")
    with pytest.raises(ValueError):
        results_table(report, fmt="latex")


def test_empty_input_fails():
    with pytest.raises(ValueError):
        evaluate_predictions([], [], [])
