"""The pure helpers of bench/ablation.py: the simulated low-resource split and the gap summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(BENCH))
    try:
        import ablation as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_gap_closed_and_high_resource_drop(ablation):
    f1 = {
        "a_none": {"hi": 0.40, "ar": 0.50, "en": 0.70, "de": 0.70},  # gap 0.25
        "b_retrieval": {"hi": 0.45, "ar": 0.55, "en": 0.69, "de": 0.69},  # gap 0.19, high -0.01
        "c_retrieval_self": {"hi": 0.55, "ar": 0.55, "en": 0.70, "de": 0.72},  # gap 0.16, high +0.01
    }
    summary = ablation.ablation_summary(f1)
    assert summary["gaps"]["a_none"]["gap"] == pytest.approx(0.25)
    assert summary["best_variant"] == "c_retrieval_self"
    assert summary["gap_closed"] == pytest.approx(0.09 / 0.25)
    assert summary["high_resource_drop_by_variant"]["c_retrieval_self"] == 0.0  # a gain is no drop
    assert summary["high_resource_drop"] == pytest.approx(0.01)  # the largest drop, from b
    assert summary["goal"]["met"] is True


def test_a_wider_gap_counts_as_negative(ablation):
    f1 = {
        "a_none": {"hi": 0.5, "ar": 0.5, "en": 0.7, "de": 0.7},
        "b_retrieval": {"hi": 0.4, "ar": 0.4, "en": 0.7, "de": 0.7},
        "c_retrieval_self": {"hi": 0.45, "ar": 0.45, "en": 0.7, "de": 0.7},
    }
    summary = ablation.ablation_summary(f1)
    assert summary["gap_closed"] == pytest.approx(-0.25) and not summary["goal"]["met"]


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
