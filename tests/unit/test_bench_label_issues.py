"""The pure helpers of bench/label_issues.py: label flipping and precision/recall."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(import_bench):
    return import_bench("label_issues")


def test_flip_labels_moves_the_asked_share_to_other_labels(bench) -> None:
    labels = np.arange(300) % 3
    flipped, mask = bench.flip_labels(labels, 0.1, seed=0)
    assert mask.sum() == 30
    assert (flipped[mask] != labels[mask]).all()
    assert (flipped[~mask] == labels[~mask]).all()
    assert set(flipped.tolist()) <= {0, 1, 2}
    assert labels.tolist() == (np.arange(300) % 3).tolist()  # the input is not changed
    again, same_mask = bench.flip_labels(labels, 0.1, seed=0)
    assert (again == flipped).all() and (same_mask == mask).all()
    assert not (bench.flip_labels(labels, 0.1, seed=1)[1] == mask).all()


def test_flip_labels_reaches_both_other_labels(bench) -> None:
    labels = np.zeros(2000, dtype=int)
    flipped, mask = bench.flip_labels(labels, 0.5, seed=3)
    counts = np.bincount(flipped[mask], minlength=3)
    assert counts[0] == 0 and 400 < counts[1] < 600 and 400 < counts[2] < 600


def test_precision_recall(bench) -> None:
    assert bench.precision_recall(["a", "b", "c", "d"], ["a", "b", "x"]) == (0.5, pytest.approx(2 / 3))
    assert bench.precision_recall([], ["a"]) == (None, 0.0)
    assert bench.precision_recall(["a"], []) == (0.0, None)


def test_spread_ignores_undefined_values(bench) -> None:
    assert bench.spread([0.5, None, 1.0]) == {"mean": 0.75, "min": 0.5, "max": 1.0}
    assert bench.spread([None]) == {"mean": None, "min": None, "max": None}
