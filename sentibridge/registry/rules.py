"""The gate's rules, as a table: one function per ``gate.mode``, picked by name.

A rule reads the evidence (per-language rows and the mean, in points, and the bootstrap behind
them), appends a reason for everything that blocks promotion, and returns ``promoted``,
``rejected`` or ``inconclusive``. Adding a rule is one function decorated with ``gate_rule`` here
and its name in ``GateConfig.mode``'s ``Literal``.

- ``noise_aware`` (default): a language counts as dropping only when "it drops no more than
  ``max_drop``" is rejected at ``1 - confidence`` after Holm's correction; the mean gain must
  exceed ``min_gain`` with ``confidence`` (one-sided). Without a credible drop or gain it is
  ``inconclusive`` when the test rows could not confirm a true mean gain of
  ``min_gain + detectable_margin`` (with ``power``), and ``rejected`` when they could.
- ``no_regression`` (the rule before): no language's point estimate drops by more than
  ``max_drop`` points and the mean gains at least ``min_gain`` points;
- ``all_improve``: every language gains at least ``min_gain`` points.

With ``bootstrap_confidence`` set, every gain the two point rules need must also hold in that
share of paired bootstrap resamples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from sentibridge.config import GateConfig
from sentibridge.statistics import EPS, drop_p_value, holm


@dataclass
class Evidence:
    """What a rule decides on. ``table``: language rows (``delta``, ``ci_low``, ``p_better``, ``rows``...);
    ``mean``: the same for the language mean; ``row_deltas``: each language's resampled deltas with
    seed noise (empty for exact scores); ``mean_deltas``: the mean's resampled deltas (the test rows'
    noise alone), None unless every language has them; ``seed_spread``: the seed noise of the mean delta."""

    table: list[dict[str, Any]]
    mean: dict[str, Any]
    row_deltas: Mapping[str, np.ndarray]
    mean_deltas: np.ndarray | None
    seed_spread: float


#: A rule: the evidence, the configured rule, the reasons so far (appended to) -> the outcome.
RuleFunction = Callable[[Evidence, GateConfig, list[str]], str]


@dataclass(frozen=True)
class Rule:
    """A rule's function, how decisions word it (``str.format`` over the rule's fields, plus
    ``noise`` and ``bootstrap``), and whether every language must gain ``min_gain`` by itself."""

    decide: RuleFunction
    text: str
    every_language: bool = False


#: ``gate.mode`` -> its rule.
RULES: dict[str, Rule] = {}


def gate_rule(text: str, every_language: bool = False) -> Callable[[RuleFunction], RuleFunction]:
    """Register the decorated function in ``RULES`` under its name."""

    def register(decide: RuleFunction) -> RuleFunction:
        RULES[decide.__name__] = Rule(decide, text, every_language)
        return decide

    return register


def interval_text(row: Mapping[str, Any]) -> str:
    if row.get("ci_low") is None:
        return ""
    return f"[{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]"


def noise_text(rule: Mapping[str, Any]) -> str:
    """``, seed noise 2/1 points`` when the rule adds training-seed noise (records before it have none)."""
    if not rule.get("seed_std") and not rule.get("seed_std_mean"):
        return ""
    source = f" ({rule['seed_noise_source']})" if rule.get("seed_noise_source") else ""
    return f", seed noise {rule['seed_std']:.3g}/{rule['seed_std_mean']:.3g} points per language/mean{source}"


def rule_text(rule: Mapping[str, Any]) -> str:
    """The rule of a decision record (``GateConfig`` as JSON) in words."""
    bootstrap = f", bootstrap confidence {rule['bootstrap_confidence']:g}" if rule.get("bootstrap_confidence") else ""
    return RULES[rule["mode"]].text.format(**rule, noise=noise_text(rule), bootstrap=bootstrap)


def _drop_reason(row: Mapping[str, Any], rule: GateConfig) -> str | None:
    if row["delta"] < -rule.max_drop - EPS:
        return f"{row['language']} drops {row['delta']:+.1f} points (tolerated: {rule.max_drop:g})"
    return None


def _confident(name: str, p: float | None, rule: GateConfig, reasons: list[str]) -> None:
    # Fail safe: a rule that asks for a bootstrap never passes without one.
    need = rule.bootstrap_confidence
    if need and p is None:
        reasons.append(f"{name}: no paired predictions for the bootstrap the rule asks for")
    elif need and p < need:
        reasons.append(f"{name} is better in only {p:.1%} of bootstrap resamples (need {need:.0%})")


@gate_rule("no language drops more than {max_drop:g} points, mean +{min_gain:g} points{bootstrap}")
def no_regression(evidence: Evidence, rule: GateConfig, reasons: list[str]) -> str:
    """No language's point estimate drops beyond ``max_drop``; the mean gains ``min_gain``."""
    reasons += [reason for row in evidence.table if (reason := _drop_reason(row, rule))]
    if evidence.mean["delta"] < rule.min_gain - EPS:
        reasons.append(f"mean gains {evidence.mean['delta']:+.2f} points, below the required +{rule.min_gain:g}")
    else:
        _confident("mean", evidence.mean["p_better"], rule, reasons)
    return "rejected" if reasons else "promoted"


@gate_rule("every language +{min_gain:g} points{bootstrap}", every_language=True)
def all_improve(evidence: Evidence, rule: GateConfig, reasons: list[str]) -> str:
    """Every language's point estimate gains ``min_gain``."""
    for row in evidence.table:
        if (reason := _drop_reason(row, rule)) is not None:
            reasons.append(reason)
        elif row["delta"] < rule.min_gain - EPS:
            reasons.append(f"{row['language']} gains {row['delta']:+.1f} points, below the required +{rule.min_gain:g}")
        else:
            _confident(row["language"], row["p_better"], rule, reasons)
    return "rejected" if reasons else "promoted"


@gate_rule(
    "no credible drop over {max_drop:g} points in any language and mean gain over +{min_gain:g} points, "
    "at confidence {confidence:g} (paired bootstrap, Holm{noise})"
)
def noise_aware(evidence: Evidence, rule: GateConfig, reasons: list[str]) -> str:
    """Credible drops (Holm) reject; a confident mean gain promotes; a mean credibly short of it rejects;
    otherwise the power of the test rows plus the seed noise decides between inconclusive and rejected."""
    table, mean, mean_deltas = evidence.table, evidence.mean, evidence.mean_deltas
    blocked = bool(reasons)  # a language without both scores
    alpha = 1 - rule.confidence
    if mean_deltas is None:  # exact scores: the point-estimate rule, in this rule's words
        reasons += [reason for row in table if (reason := _drop_reason(row, rule))]
        if mean["delta"] <= rule.min_gain + EPS:
            reasons.append(f"mean gains {mean['delta']:+.2f} points, not above the required +{rule.min_gain:g}")
        return "rejected" if reasons else "promoted"
    adjusted = holm({row["language"]: drop_p_value(evidence.row_deltas[row["language"]], rule.max_drop) for row in table})
    for row in table:
        row["p_drop"] = adjusted[row["language"]]
        if row["p_drop"] < alpha:
            reasons.append(
                f"{row['language']} drops {row['delta']:+.1f} points {interval_text(row)}: credibly more than "
                f"{rule.max_drop:g} (Holm-adjusted p {row['p_drop']:.3f} < {alpha:.3g})"
            )
    if reasons or blocked:
        return "rejected"
    if mean["ci_low"] > rule.min_gain + EPS:
        return "promoted"
    return _short_of_gain(evidence, rule, reasons)


def _short_of_gain(evidence: Evidence, rule: GateConfig, reasons: list[str]) -> str:
    """``noise_aware`` when the mean's lower bound misses ``min_gain``: inconclusive or rejected."""
    table, mean, seed_spread = evidence.table, evidence.mean, evidence.seed_spread
    spread = float(np.std(evidence.mean_deltas))
    z = NormalDist().inv_cdf(rule.confidence) + NormalDist().inv_cdf(rule.power)
    detectable = rule.min_gain + z * math.hypot(spread, seed_spread)
    short = (
        f"mean gains {mean['delta']:+.2f} points {interval_text(mean)}, whose lower bound is below the required "
        f"+{rule.min_gain:g} (confidence {rule.confidence:g})"
    )
    if detectable > rule.min_gain + rule.detectable_margin + EPS and mean["ci_high"] >= rule.min_gain - EPS:
        per_language = float(np.mean([row["rows"] for row in table if row["rows"]] or [float("nan")]))
        rows = None if math.isnan(per_language) else rows_needed(per_language, spread, rule, seed_spread)
        if rows is not None:
            needed = f"; about {rows} test rows per language would be needed (now about {per_language:.0f})"
        elif seed_spread and not math.isnan(per_language):
            needed = (
                f"; training-seed noise alone (gate.seed_std_mean {rule.seed_std_mean:g}) hides that gain whatever the "
                "number of test rows: compare means over several training seeds, or lower the noise"
            )
        else:
            needed = ""
        reasons.append(
            f"inconclusive: {short}, and these test rows can only confirm a true mean gain of "
            f"{detectable:.1f} points (power {rule.power:g}), not the {rule.min_gain + rule.detectable_margin:g} the rule asks "
            f"for{needed}"
        )
        return "inconclusive"
    if mean["ci_high"] < rule.min_gain - EPS:
        reasons.append(f"{short}; so is its upper bound: credibly short of it")
    else:
        reasons.append(f"{short}; the test rows could confirm a true gain of {detectable:.1f} points, so this is no gain")
    return "rejected"


def rows_needed(rows_per_language: float, spread: float, rule: GateConfig, seed_spread: float = 0.0) -> int | None:
    """Test rows per language for a true mean gain of ``min_gain + detectable_margin`` to pass with ``power``.

    ``spread`` is the bootstrap standard deviation of the mean delta (points) on
    ``rows_per_language``; it shrinks as one over the square root of the rows. ``seed_spread``
    (training-seed noise of the mean delta) does not shrink with rows: None when it alone is
    too large for any number of rows.
    """
    z = NormalDist().inv_cdf(rule.confidence) + NormalDist().inv_cdf(rule.power)
    room = (rule.detectable_margin / z) ** 2 - seed_spread**2
    if room <= 0:
        return None
    return math.ceil(rows_per_language * spread**2 / room)
