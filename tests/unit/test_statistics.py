"""sentibridge.statistics: the numbers the gate, ``compare`` and ``experiment`` all rest on."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from sentibridge.statistics import (
    bootstrap_deltas,
    combined_interval,
    difference_interval,
    holm,
    macro_f1,
    macro_f1_rows,
    paired_bootstrap,
    pooled_sd,
    seed_draws,
    seeds_needed,
    t_interval,
    two_sided_p,
)


def _labels_and_predictions(n: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    wrong = (y + rng.integers(1, 3, n)) % 3
    return y, np.where(rng.random(n) < accuracy, y, wrong)


# --- macro-F1 -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_macro_f1_is_sklearns_macro_f1(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 60))
    y, p = rng.integers(0, 3, n), rng.integers(0, 3, n)
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro", zero_division=0))


@pytest.mark.parametrize(
    ("y", "p"),
    [
        ([0, 0, 1, 1], [0, 0, 1, 1]),  # perfect, one class never present
        ([0, 0, 0, 0], [1, 1, 1, 1]),  # all wrong
        ([0, 1, 2, 2], [0, 0, 0, 0]),  # one class predicted for everything
        ([2, 2, 2], [2, 2, 1]),  # a class predicted but absent from the labels counts (as 0)
    ],
)
def test_macro_f1_edge_cases_match_sklearn(y, p):
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro", zero_division=0))


def test_macro_f1_rows_ignores_listed_classes_absent_from_a_row():
    """A class in ``classes`` that neither labels nor predictions of a row contain does not dilute it."""
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 3, (20, 15)), rng.integers(0, 3, (20, 15))
    got = macro_f1_rows(y, p, [0, 1, 2, 3, 4])
    want = [f1_score(y[i], p[i], average="macro", zero_division=0) for i in range(len(y))]
    assert got == pytest.approx(want)


# --- paired bootstrap -----------------------------------------------------------------------


def test_paired_bootstrap_of_identical_predictions_is_all_zero():
    y, p = _labels_and_predictions(60, 0.6, 0)
    deltas = paired_bootstrap(y, p, p.copy(), 200, seed=3)
    assert deltas.shape == (200,)
    assert np.all(deltas == 0)


def test_paired_bootstrap_is_seeded_and_in_points():
    y, ref = _labels_and_predictions(60, 0.5, 0)
    cand = y.copy()  # perfect
    a = paired_bootstrap(y, cand, ref, 100, seed=5)
    assert np.array_equal(a, paired_bootstrap(y, cand, ref, 100, seed=5))
    assert not np.array_equal(a, paired_bootstrap(y, cand, ref, 100, seed=6))
    # A perfect candidate against a weaker reference: every resample is a gain, in points (not 0..1).
    assert np.all(a > 0) and a.mean() > 10
    assert np.median(a) == pytest.approx(100 * (macro_f1(y, cand) - macro_f1(y, ref)), abs=10)


def test_a_candidate_that_fixes_many_rows_has_an_interval_above_zero():
    y, ref = _labels_and_predictions(200, 0.5, 2)
    cand = ref.copy()
    wrong = np.flatnonzero(ref != y)
    cand[wrong[: len(wrong) // 2]] = y[wrong[: len(wrong) // 2]]  # fix half the mistakes
    deltas = paired_bootstrap(y, cand, ref, 500, seed=0)
    assert np.quantile(deltas, 0.025) > 0
    # ... and swapped, the same interval below zero.
    assert np.quantile(paired_bootstrap(y, ref, cand, 500, seed=0), 0.975) < 0


def test_a_small_change_on_few_rows_has_an_interval_across_zero():
    """Honest intervals: fixing one row of 40 is not a credible gain."""
    y, ref = _labels_and_predictions(40, 0.5, 4)
    cand = ref.copy()
    first_wrong = np.flatnonzero(ref != y)[0]
    cand[first_wrong] = y[first_wrong]
    deltas = paired_bootstrap(y, cand, ref, 500, seed=0)
    assert np.quantile(deltas, 0.025) <= 0 < np.quantile(deltas, 0.975)


def test_seeds_by_rows_input_averages_each_side_over_its_seeds():
    """(seeds x rows): each side's F1 is its mean over seeds on the same resamples."""
    y, b0 = _labels_and_predictions(50, 0.5, 0)
    _, a0 = _labels_and_predictions(50, 0.7, 1)
    _, a1 = _labels_and_predictions(50, 0.8, 2)
    _, b1 = _labels_and_predictions(50, 0.4, 3)
    single = {(i, j): paired_bootstrap(y, a, b, 150, seed=9) for i, a in enumerate((a0, a1)) for j, b in enumerate((b0, b1))}

    two_by_one = paired_bootstrap(y, np.stack([a0, a1]), b0, 150, seed=9)
    assert two_by_one == pytest.approx((single[0, 0] + single[1, 0]) / 2)

    two_by_two = paired_bootstrap(y, np.stack([a0, a1]), np.stack([b0, b1]), 150, seed=9)
    assert two_by_two == pytest.approx(sum(single.values()) / 4)
    # A single row given as a 1 x rows array is the same as a vector.
    assert paired_bootstrap(y, a0[None], b0, 150, seed=9) == pytest.approx(single[0, 0])


def test_bootstrap_deltas_gives_each_language_its_own_stream():
    y1, p1 = _labels_and_predictions(40, 0.5, 0)
    y2, p2 = _labels_and_predictions(40, 0.5, 1)
    deltas = bootstrap_deltas({"hi": (y2, y2, p2), "de": (y1, y1, p1)}, 100, seed=10)
    assert set(deltas) == {"de", "hi"}
    # Languages in sorted order take seed, seed + 1, ...: reproducible whatever the dict order.
    assert np.array_equal(deltas["de"], paired_bootstrap(y1, y1, p1, 100, 10))
    assert np.array_equal(deltas["hi"], paired_bootstrap(y2, y2, p2, 100, 11))


# --- Holm -----------------------------------------------------------------------------------


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone).
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})


def test_holm_is_capped_at_one_and_keeps_a_single_p():
    assert holm({"a": 0.4, "b": 0.6, "c": 0.9}) == {"a": 1.0, "b": 1.0, "c": 1.0}
    assert holm({"only": 0.03}) == {"only": pytest.approx(0.03)}
    assert holm({}) == {}


@pytest.mark.parametrize("seed", range(5))
def test_holm_is_monotone_and_never_below_raw(seed):
    rng = np.random.default_rng(seed)
    raw = {f"l{i}": float(p) for i, p in enumerate(rng.random(7) ** 3)}
    adjusted = holm(raw)
    assert set(adjusted) == set(raw)
    assert all(raw[k] <= adjusted[k] <= 1.0 for k in raw)
    ordered = sorted(raw, key=raw.get)
    assert all(adjusted[a] <= adjusted[b] for a, b in itertools.pairwise(ordered))


# --- seed noise -----------------------------------------------------------------------------


def test_t_interval_matches_scipy():
    values = [1.2, -0.4, 2.5, 0.9, 1.7]
    got = t_interval(values, 0.95)
    sem = stats.sem(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sem)
    assert got["mean"] == pytest.approx(np.mean(values))
    assert got["sd"] == pytest.approx(np.std(values, ddof=1))
    assert got["se"] == pytest.approx(sem)
    assert (got["low"], got["high"]) == pytest.approx((low, high))
    assert got["n"] == 5
    narrower = t_interval(values, 0.8)
    assert got["low"] < narrower["low"] < narrower["high"] < got["high"]


def test_t_interval_of_one_value_has_no_spread():
    assert t_interval([3.0]) == {"mean": 3.0, "sd": None, "se": None, "low": None, "high": None, "n": 1}


def test_pooled_sd_centres_each_group_and_skips_single_values():
    # Squares about each group's own mean: 2 + 8 (means 2 and 12) on 2 + 1 degrees of freedom.
    sd, dof = pooled_sd([[1.0, 2.0, 3.0], [10.0, 14.0], [100.0]])
    assert dof == 3 and sd == pytest.approx(math.sqrt(10 / 3))
    assert pooled_sd([[1.0], [5.0]]) == (None, 0)
    assert pooled_sd([]) == (None, 0)


def test_difference_interval_over_two_samples_is_students_two_sample_interval():
    reference, other = [0.61, 0.58, 0.64, 0.60], [0.66, 0.63, 0.70]
    sd, dof = pooled_sd([reference, other])
    got = difference_interval(reference, other, sd, dof, 0.95)
    scipy_ci = stats.ttest_ind(other, reference, equal_var=True).confidence_interval(0.95)
    assert got["mean"] == pytest.approx(np.mean(other) - np.mean(reference))
    assert (got["low"], got["high"]) == pytest.approx((scipy_ci.low, scipy_ci.high))
    assert got["se"] == pytest.approx(sd * math.sqrt(1 / 4 + 1 / 3))


def test_difference_interval_takes_a_spread_pooled_over_more_groups():
    # The same spread on more degrees of freedom: a smaller t quantile, a narrower interval.
    reference, other = [0.60, 0.58, 0.62], [0.65, 0.63, 0.67]
    narrow = difference_interval(reference, other, 0.02, 40)
    wide = difference_interval(reference, other, 0.02, 4)
    half = stats.t.ppf(0.975, 4) * 0.02 * math.sqrt(2 / 3)
    assert (wide["low"], wide["high"]) == pytest.approx((0.05 - half, 0.05 + half))
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]


def test_seed_draws_are_seeded_and_scale_with_the_standard_error():
    one = seed_draws(1.0, None, 20000, seed=4)
    assert np.array_equal(one, seed_draws(1.0, None, 20000, seed=4))
    assert np.allclose(seed_draws(2.5, None, 20000, seed=4), 2.5 * one)
    assert one.std() == pytest.approx(1.0, abs=0.03)  # normal without degrees of freedom
    t5 = seed_draws(1.0, 5, 20000, seed=4)
    assert t5.std() == pytest.approx(math.sqrt(5 / 3), abs=0.1)  # Student's t: heavier than normal
    assert not seed_draws(0.0, 3, 100, seed=4).any()


def test_two_sided_p():
    assert two_sided_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(2 * (1 + 1) / 5)
    assert two_sided_p(np.ones(99)) == pytest.approx(2 / 100)  # smoothed, never 0
    assert two_sided_p(-np.ones(99)) == pytest.approx(2 / 100)  # both tails
    assert two_sided_p(np.zeros(50)) == 1.0  # no difference at all: capped at 1
    assert two_sided_p(np.random.default_rng(0).standard_normal(2000)) > 0.8


def test_combined_interval_is_wider_than_either_noise_alone():
    rng = np.random.default_rng(0)
    rows = 3.0 + rng.standard_normal(5000)
    seeds = 1.5 * rng.standard_normal(5000)
    both = combined_interval(rows, seeds, 0.95)
    rows_only = combined_interval(rows, np.zeros_like(rows), 0.95)
    width = both["high"] - both["low"]
    assert width > rows_only["high"] - rows_only["low"]
    assert width > np.quantile(seeds, 0.975) - np.quantile(seeds, 0.025)
    # Independent noises: variances add (sd sqrt(1 + 1.5^2) ~ 1.80, so width ~ 2 x 1.96 x 1.80).
    assert width == pytest.approx(2 * 1.96 * math.sqrt(1 + 1.5**2), rel=0.08)
    # Without seed noise it is the rows' own percentile interval, and p is the bootstrap's.
    assert rows_only["low"] == pytest.approx(np.quantile(rows, 0.025))
    assert rows_only["p"] == two_sided_p(rows)
    assert both["p"] > rows_only["p"]  # more noise, weaker evidence


def _z(confidence: float = 0.95, power: float = 0.8) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2) + NormalDist().inv_cdf(power)


def test_seeds_needed_by_hand():
    # room = (effect / z)^2 - rows_sd^2 = 1, so n = ceil(seed_sd^2) = ceil(8.41) = 9.
    assert seeds_needed(_z(), 2.9, 0.0, 0.95, 0.8) == 9
    assert seeds_needed(_z(), 0.0, 0.0, 0.95, 0.8) == 1  # no seed noise: one seed


@pytest.mark.parametrize(("effect", "seed_sd", "rows_sd"), [(1.0, 2.0, 0.2), (3.0, 5.0, 0.5), (2.0, 7.1, 0.0)])
def test_seeds_needed_is_the_fewest_seeds_that_reach_the_power(effect, seed_sd, rows_sd):
    n = seeds_needed(effect, seed_sd, rows_sd, 0.95, 0.8)
    target = (effect / _z()) ** 2
    assert seed_sd**2 / n + rows_sd**2 <= target + 1e-12
    assert n == 1 or seed_sd**2 / (n - 1) + rows_sd**2 > target


def test_seeds_needed_grows_as_the_effect_shrinks_and_the_seed_noise_grows():
    by_effect = [seeds_needed(e, 3.0, 0.3, 0.95, 0.8) for e in (4.0, 2.0, 1.0)]
    assert by_effect[0] < by_effect[1] < by_effect[2]
    by_noise = [seeds_needed(2.0, sd, 0.3, 0.95, 0.8) for sd in (1.0, 3.0, 6.0)]
    assert by_noise[0] < by_noise[1] < by_noise[2]
    assert seeds_needed(2.0, 3.0, 0.3, 0.99, 0.8) > seeds_needed(2.0, 3.0, 0.3, 0.9, 0.8)


def test_seeds_needed_is_none_when_the_rows_alone_hide_the_effect():
    """No number of seeds removes the test rows' noise: the documented answer is None."""
    effect = 2.0
    limit = effect / _z()
    assert seeds_needed(effect, 1.0, limit * 1.01, 0.95, 0.8) is None
    assert seeds_needed(effect, 0.0, limit * 1.5, 0.95, 0.8) is None
    assert seeds_needed(effect, 1.0, limit * 0.9, 0.95, 0.8) is not None
