"""The statistics every comparison shares: the gate, ``compare`` and ``experiment``.

Scores are per-language macro-F1; differences are in points (x100). Two noises hide a real
difference between two models:

- the test rows' noise: a paired bootstrap resamples the rows both models scored
  (``paired_bootstrap``), so each resample scores both on the same rows;
- the training seed's noise: a retrain that changes nothing but the seed moves a language by
  points. With several seeds per recipe it is measured (``t_interval`` over the per-seed
  differences); with one, the gate's configured ``seed_std`` stands in for it.

``combined_interval`` adds the two (``one_sided_interval`` is the gate's), ``drop_p_value`` tests a
drop, and ``holm`` corrects for testing every language at once.
Two recipes' independent seed runs, with no rows paired, compare by ``difference_interval`` over
a seed spread pooled across recipes (``pooled_sd``; the ablation bench).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any
from statistics import NormalDist

import numpy as np
from scipy import stats

#: Differences below this many points are float noise, not gains or drops.
EPS = 1e-9


def macro_f1_rows(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Macro-F1 of each row of two (resamples x rows) arrays, as sklearn computes it per row.

    Averages over the classes present in that row's labels or predictions (sklearn's default,
    and ``evaluate_predictions``'); a class never predicted and present scores 0.
    """
    total = np.zeros(labels.shape[0])
    present = np.zeros(labels.shape[0])
    for c in classes:
        truth, guess = labels == c, predictions == c
        support = truth.sum(axis=1) + guess.sum(axis=1)
        total += 2 * (truth & guess).sum(axis=1) / np.maximum(support, 1)
        present += support > 0
    return total / np.maximum(present, 1)


def macro_f1(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """Macro-F1 (0..1) of one prediction vector."""
    y, p = np.asarray(labels)[None], np.asarray(predictions)[None]
    return float(macro_f1_rows(y, p, np.union1d(y, p))[0])


def paired_bootstrap(
    labels: Sequence[int], candidate: np.ndarray | Sequence[int], reference: np.ndarray | Sequence[int],
    resamples: int, seed: int,
) -> np.ndarray:
    """Macro-F1 differences (candidate - reference, in points) over paired resamples of the rows.

    Both models are scored on the same resampled rows, so the spread is the test set's noise,
    not the difference between two independent draws. ``candidate`` and ``reference`` are one
    prediction vector each, or (seeds x rows) arrays: then each side's F1 is its mean over its
    seeds on every resample (what "the recipe's mean over seeds" means on those rows).
    """
    y = np.asarray(labels)
    a, b = np.atleast_2d(np.asarray(candidate)), np.atleast_2d(np.asarray(reference))
    classes = np.union1d(y, np.union1d(a, b))
    pick = np.random.default_rng(seed).integers(0, len(y), (resamples, len(y)))
    y_pick = y[pick]

    def mean_f1(side: np.ndarray) -> np.ndarray:
        return np.mean([macro_f1_rows(y_pick, preds[pick], classes) for preds in side], axis=0)

    return 100 * (mean_f1(a) - mean_f1(b))


def bootstrap_deltas(
    predictions: Mapping[str, tuple[Sequence[int], np.ndarray | Sequence[int], np.ndarray | Sequence[int]]],
    resamples: int, seed: int,
) -> dict[str, np.ndarray]:
    """Per language ``(labels, candidate preds, reference preds)`` -> its resampled deltas."""
    return {
        language: paired_bootstrap(y, a, b, resamples, seed + k)
        for k, (language, (y, a, b)) in enumerate(sorted(predictions.items()))
    }


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm step-down adjusted p-values (monotone, at most 1): reject where adjusted < alpha."""
    adjusted, running = {}, 0.0
    ordered = sorted(p_values, key=lambda key: p_values[key])
    for rank, key in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p_values[key]))
        adjusted[key] = running
    return adjusted


def one_sided_interval(draws: np.ndarray, alpha: float) -> dict[str, float]:
    """``ci_low``/``ci_high``: each a one-sided (1 - alpha) bound of resampled differences (so a mean
    passes exactly when ``ci_low`` clears the gain it needs); ``p_better``: the share above 0."""
    return {"ci_low": float(np.quantile(draws, alpha)), "ci_high": float(np.quantile(draws, 1 - alpha)),
            "p_better": float(np.mean(draws > EPS))}


def drop_p_value(draws: np.ndarray, max_drop: float) -> float:
    """Bootstrap p-value of "the drop is at most ``max_drop``": the share of resamples that agree (+1 smoothed)."""
    return float((1 + np.sum(draws >= -max_drop - EPS)) / (1 + len(draws)))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float | None]:
    """Mean, standard deviation, standard error and two-sided t interval of ``values``.

    One value has no spread: its ``sd``, ``se`` and interval are None.
    """
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "sd": None, "se": None, "low": None, "high": None, "n": len(values)}
    sd = statistics.stdev(values)
    se = sd / math.sqrt(len(values))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * se
    return {"mean": mean, "sd": sd, "se": se, "low": mean - half, "high": mean + half, "n": len(values)}


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float | None, int]:
    """Standard deviation pooled over groups that share one spread, and its degrees of freedom.

    Each group is centred on its own mean (values minus groups degrees of freedom); a group of
    one value adds nothing. ``(None, 0)`` without a group of two values or more.
    """
    spread = [(group, statistics.fmean(group)) for group in groups if len(group) > 1]
    dof = sum(len(group) - 1 for group, _ in spread)
    if not dof:
        return None, 0
    squares = sum((x - centre) ** 2 for group, centre in spread for x in group)
    return math.sqrt(squares / dof), dof


def difference_interval(
    reference: Sequence[float], other: Sequence[float], sd: float, dof: int, confidence: float = 0.95,
) -> dict[str, float]:
    """``mean(other) - mean(reference)`` of two independent samples, with its two-sided t interval.

    Student's interval: both samples share the spread ``sd`` of one value, with ``dof`` (at least
    1) degrees of freedom, e.g. pooled over these two samples or over more groups (``pooled_sd``).
    """
    delta = statistics.fmean(other) - statistics.fmean(reference)
    se = sd * math.sqrt(1 / len(reference) + 1 / len(other))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    return {"mean": delta, "se": se, "low": delta - half, "high": delta + half}


def seed_draws(se: float, dof: int | None, resamples: int, seed: int) -> np.ndarray:
    """Draws of the seed noise of a mean difference: ``se`` times Student's t (normal without ``dof``)."""
    rng = np.random.default_rng([seed, 2])  # a stream apart from the bootstrap's
    draws = rng.standard_t(dof, resamples) if dof else rng.standard_normal(resamples)
    return se * draws


def two_sided_p(draws: np.ndarray) -> float:
    """Bootstrap p-value of "no difference": twice the smaller tail beyond 0 (+1 smoothed, at most 1)."""
    below, above = np.sum(draws <= EPS), np.sum(draws >= -EPS)
    return float(min(1.0, 2 * (1 + min(below, above)) / (1 + len(draws))))


def combined_interval(row_deltas: np.ndarray, seed_noise: np.ndarray, confidence: float) -> dict[str, float]:
    """Two-sided interval and p-value of a difference carrying the rows' and the seeds' noise.

    ``row_deltas``: the paired bootstrap's resampled differences (centred on the estimate);
    ``seed_noise``: zero-centred draws of the seed noise of the same difference.
    """
    noisy = row_deltas + seed_noise
    alpha = 1 - confidence
    return {"low": float(np.quantile(noisy, alpha / 2)), "high": float(np.quantile(noisy, 1 - alpha / 2)),
            "p": two_sided_p(noisy)}


def seeds_needed(effect: float, seed_sd: float, rows_sd: float, confidence: float, power: float) -> int | None:
    """Seeds per recipe for a true difference of ``effect`` points to show (two-sided, with ``power``).

    ``seed_sd``: the spread of one seed's difference (points); averaging n seeds divides it by
    the square root of n. ``rows_sd``: the test rows' spread of the difference, which no number of
    seeds removes: None when it alone hides ``effect``.
    """
    z = NormalDist().inv_cdf(0.5 + confidence / 2) + NormalDist().inv_cdf(power)
    room = (effect / z) ** 2 - rows_sd**2
    if room <= 0:
        return None
    return max(1, math.ceil(seed_sd**2 / room))


def pooled_seed_spread(groups: Sequence[Sequence[Mapping[str, float]]]) -> dict[str, Any] | None:
    """Pooled training-seed noise in points from groups of runs (language -> F1 in 0..1), one group per recipe.

    Each group is centred on its own mean, so recipes of different quality pool fairly.
    ``per_language_points`` is the root of the mean per-language variance (``gate.seed_std``);
    ``mean_points`` the spread of the language mean (``gate.seed_std_mean``). None without a
    group of two runs or more.
    """
    language_var, mean_var, dof = 0.0, 0.0, 0
    for runs in groups:
        if len(runs) < 2:
            continue
        frame = 100 * np.array([[run[lang] for lang in sorted(runs[0])] for run in runs])
        language_var += float(frame.var(axis=0, ddof=1).mean()) * (len(runs) - 1)
        mean_var += float(frame.mean(axis=1).var(ddof=1)) * (len(runs) - 1)
        dof += len(runs) - 1
    if not dof:
        return None
    return {"per_language_points": round((language_var / dof) ** 0.5, 2), "mean_points": round((mean_var / dof) ** 0.5, 2),
            "degrees_of_freedom": dof}

