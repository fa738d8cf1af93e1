"""The promotion gate: does a candidate beat the reference (the champion, or the base model)?

Scores are per-language macro-F1 in 0..1, measured on the same test rows; the rule speaks in
F1 points (x100), as people do. Per-language macro-F1 on a few hundred rows moves by points
between two training seeds, so the default rule asks whether a difference is credible:

- ``noise_aware`` (default): a paired bootstrap of the test rows gives each language's delta an
  interval. A language counts as dropping only when "it drops no more than ``max_drop``" is
  rejected at ``1 - confidence`` after Holm's correction for the number of languages; the mean
  gain must exceed ``min_gain`` with ``confidence`` (one-sided). A candidate that passes is
  ``promoted``, one with a credible drop is ``rejected``; otherwise it is ``inconclusive`` when the
  test rows could not confirm a true mean gain of ``min_gain + detectable_margin`` (with ``power``), and
  ``rejected`` when they could. Inconclusive decisions say how many rows would be needed.
- ``no_regression`` (the rule before): no language's point estimate drops by more than
  ``max_drop`` points and the mean gains at least ``min_gain`` points;
- ``all_improve``: every language gains at least ``min_gain`` points.

With ``bootstrap_confidence`` set, every gain the two older modes need must also hold in that
share of paired bootstrap resamples. Every decision made from predictions shows each
language's interval (``ci_low``..``ci_high``, points) and P(better), whatever the mode.

The bootstrap sees only the test rows' noise. A retrain that changes nothing but the seed
still moves per-language F1 by points, so the intervals also carry training-seed noise:
``seed_std`` per language and ``seed_std_mean`` for the mean (the defaults measured on UMSAB by
``bench/gate_calibration.py``; ``bench/seed_noise.py`` measures any recipe); 0 turns it off.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from sentibridge.config import GateConfig
from sentibridge.inference.evaluation import evaluate_predictions
from sentibridge.statistics import EPS as _EPS
from sentibridge.statistics import bootstrap_deltas, holm
from sentibridge.tables import text_table
OUTCOMES = ("promoted", "rejected", "inconclusive")


@dataclass
class Decision:
    """A gate decision: the per-language table, the rule, each reason, and both versions.

    ``outcome`` is ``promoted``, ``rejected`` or ``inconclusive`` (too few test rows to tell; not
    promoted). Language rows and ``mean`` carry ``delta``, ``ci_low`` and ``ci_high`` (points)
    and ``p_better``; language rows also ``p_drop`` (Holm-adjusted) under ``noise_aware``.
    """

    promote: bool
    reference: str  # "champion" or "base_zero_shot"
    candidate_version: str | None
    champion_version: str | None
    rule: dict[str, Any]
    languages: list[dict[str, Any]]
    mean: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    outcome: str = ""  # empty only in records older than the field: derived from ``promote``

    def __post_init__(self) -> None:
        if not self.outcome:
            self.outcome = "promoted" if self.promote else "rejected"
        if self.outcome not in OUTCOMES or (self.outcome == "promoted") != self.promote:
            raise ValueError(f"gate outcome {self.outcome!r} does not match promote={self.promote}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> "Decision":
        return cls(**{k: payload[k] for k in cls.__dataclass_fields__ if k in payload})

    def _against(self, base: str) -> str:
        return f"champion v{self.champion_version}" if self.reference == "champion" else base

    def _has(self, key: str) -> bool:
        return any(row.get(key) is not None for row in [*self.languages, self.mean])

    def text(self) -> str:
        """The decision as the CLI prints it: a verdict line, the table, the reasons."""
        verdict = "PROMOTED" if self.promote else "NOT PROMOTED"
        outcome = ": inconclusive" if self.outcome == "inconclusive" else ""
        lines = [
            f"gate: {verdict} candidate v{self.candidate_version} against {self._against('base model (zero-shot)')}"
            f"{outcome} (rule: {rule_text(self.rule)})"
        ]
        has_ci, has_p, has_drop = self._has("ci_low"), self._has("p_better"), self._has("p_drop")
        headers = ["language", "candidate", "reference", "delta"]
        fmt = ["", ".1f", ".1f", "+.1f"]
        if has_ci:
            headers.append(f"{interval_percent(self.rule)}% interval")
            fmt.append("")
        if has_p:
            headers.append("P(better)")
            fmt.append(".3f")
        if has_drop:
            headers.append("p(drop)")
            fmt.append(".3f")
        rows = []
        for row in [*self.languages, {"language": "mean", **self.mean}]:
            cells = [row["language"], 100 * row["candidate"], 100 * row["reference"], row["delta"]]
            cells += [interval_text(row)] if has_ci else []
            cells += [row.get("p_better")] if has_p else []
            cells += [row.get("p_drop")] if has_drop else []
            rows.append(cells)
        table = text_table(headers, rows, floatfmt=fmt)
        lines += [f"  {line}" for line in table.splitlines()]
        lines += [f"  - {reason}" for reason in self.reasons]
        return "\n".join(lines)

    def markdown(self, max_chars: int | None = None) -> str:
        """The decision in Markdown: verdict, the per-language table (F1 points), the reasons.

        With ``max_chars`` (e.g. a registry's description limit) a long decision keeps the
        languages with the largest drops, with their reasons and those about the whole (the
        mean, the reference), and says how many more are in ``gate/decision.json``: the text
        stays a whole table, never one cut mid-row.
        """
        text = self._markdown(self.languages, self.reasons)
        if max_chars is None or len(text) <= max_chars:
            return text
        worst_first = sorted(self.languages, key=lambda row: row["delta"])
        for keep in range(len(self.languages) - 1, -1, -1):
            hidden = {row["language"] for row in worst_first[keep:]}
            # Per-language reasons start with the language code ("fr drops ...", "fr: no ...").
            reasons = [reason for reason in self.reasons if reason.split(" ", 1)[0].rstrip(":") not in hidden]
            text = self._markdown([row for row in self.languages if row["language"] not in hidden], reasons)
            if len(text) <= max_chars:
                break
        return text

    def _markdown(self, rows: list[dict[str, Any]], reasons: list[str]) -> str:
        has_ci, has_p, has_drop = self._has("ci_low"), self._has("p_better"), self._has("p_drop")
        extra = ([f"{interval_percent(self.rule)}% interval"] if has_ci else []) + (["P(better)"] if has_p else []) + (
            ["p(drop)"] if has_drop else [])
        outcome = "promoted" if self.promote else ("inconclusive" if self.outcome == "inconclusive" else "not promoted")
        lines = [
            f"### Gate: {outcome}",
            "",
            f"Candidate v{self.candidate_version} against {self._against('the base model (zero-shot)')}; "
            f"rule: {rule_text(self.rule)}.",
            "",
            "| language | candidate F1 | reference F1 | delta (points) |" + "".join(f" {name} |" for name in extra),
            "|---|---:|---:|---:|" + "---:|" * len(extra),
        ]

        def cells(row: Mapping[str, Any]) -> list[str]:
            out = [f"{100 * row['candidate']:.1f}", f"{100 * row['reference']:.1f}", f"{row['delta']:+.1f}"]
            if has_ci:
                out.append(interval_text(row))
            for key, wanted in (("p_better", has_p), ("p_drop", has_drop)):
                if wanted:
                    out.append("" if row.get(key) is None else f"{row[key]:.3f}")
            return out

        lines += [f"| {row['language']} | " + " | ".join(cells(row)) + " |" for row in rows]
        lines.append("| **mean** | " + " | ".join(f"**{cell}**" if cell else "" for cell in cells(self.mean)) + " |")
        if len(rows) < len(self.languages):
            lines += ["", f"_{len(rows)} of {len(self.languages)} languages shown (the largest drops); "
                          "the run's `gate/decision.json` has them all._"]
        lines += ["", "**Reasons**", ""] + [f"- {reason}" for reason in reasons]
        if len(reasons) < len(self.reasons):
            lines.append(f"- _{len(self.reasons) - len(reasons)} more in the run's `gate/decision.json`_")
        return "\n".join(lines)

    def failing_languages(self) -> list[dict[str, Any]]:
        """The language rows that block promotion by themselves, worst first."""
        alpha = 1 - self.rule.get("confidence", 0.95)

        def fails(row: Mapping[str, Any]) -> bool:
            if row.get("p_drop") is not None:  # noise_aware with predictions: only credible drops count
                return row["p_drop"] < alpha
            if row["delta"] < -self.rule["max_drop"] - _EPS:
                return True
            return self.rule["mode"] == "all_improve" and row["delta"] < self.rule["min_gain"] - _EPS

        return sorted((row for row in self.languages if fails(row)), key=lambda row: row["delta"])

    def run_name(self) -> str:
        """A run name people can tell apart: ``v3 promoted (mean F1 71.2)``, ``v4 rejected: fr -2.1``."""
        version = f"v{self.candidate_version}"
        if self.promote:
            return f"{version} promoted (mean F1 {100 * self.mean['candidate']:.1f})"
        if self.outcome == "inconclusive":
            return f"{version} inconclusive: mean {self.mean['delta']:+.1f} {interval_text(self.mean)}".rstrip()
        failing = self.failing_languages()
        if failing:
            named = ", ".join(f"{row['language']} {row['delta']:+.1f}" for row in failing[:2])
            return f"{version} rejected: {named}" + (f" (+{len(failing) - 2} more)" if len(failing) > 2 else "")
        # No language failed: the mean fell short, or it was not confident enough.
        confident_mode = self.rule["mode"] == "noise_aware" and self.mean.get("ci_low") is not None
        unsure = (confident_mode or self.rule.get("bootstrap_confidence")) and self.mean["delta"] >= self.rule["min_gain"] - _EPS
        return f"{version} rejected: mean {self.mean['delta']:+.1f}" + (" (not confident)" if unsure else "")

    def tags(self) -> dict[str, str]:
        """Registry tags: ``gate_mean`` and ``gate_<lang>``, each a small JSON of delta, interval and p."""
        summary = self.summary()
        return {"gate_mean": json.dumps(summary["mean"])} | {
            f"gate_{language}": json.dumps(row) for language, row in summary["languages"].items()
        }

    def summary(self) -> dict[str, Any]:
        """A compact record: outcome, and for the mean and each language delta [ci_low, ci_high] and p."""

        def short(row: Mapping[str, Any]) -> dict[str, Any]:
            out = {key: round(row[key], 2) for key in ("delta", "ci_low", "ci_high") if row.get(key) is not None}
            for key in ("p_better", "p_drop"):
                if row.get(key) is not None:
                    out[key] = round(row[key], 3)
            return out

        return {
            "outcome": self.outcome,
            "reference": self.reference,
            "champion_version": self.champion_version,
            "mean": short(self.mean),
            "languages": {row["language"]: short(row) for row in self.languages},
        }


def interval_percent(rule: Mapping[str, Any]) -> str:
    """The two-sided coverage of the shown intervals: each end is a one-sided ``confidence`` bound."""
    return f"{100 * (2 * rule.get('confidence', 0.95) - 1):g}"


def interval_text(row: Mapping[str, Any]) -> str:
    if row.get("ci_low") is None:
        return ""
    return f"[{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]"


def summary_mean_text(summary: Mapping[str, Any] | None) -> str:
    """``+1.2 [-0.8, +3.1]``: the mean delta of a ``Decision.summary`` (or its tags, read back) with its interval."""
    if not summary:
        return ""
    mean = summary["mean"]
    return f"{mean['delta']:+.1f} {interval_text(mean)}".rstrip()


def summary_table(summary: Mapping[str, Any]) -> str:
    """Per language delta, interval and p of a ``Decision.summary`` (the registry tag), as a text table."""
    rows = [[language, row["delta"], interval_text(row), row.get("p_better"), row.get("p_drop")]
            for language, row in [*summary["languages"].items(), ("mean", summary["mean"])]]
    return text_table(["language", "delta", "interval", "P(better)", "p(drop)"], rows, floatfmt=["", "+.1f", "", ".3f", ".3f"])


def noise_text(rule: Mapping[str, Any]) -> str:
    """``, seed noise 2/1 points`` when the rule adds training-seed noise (records before it have none)."""
    if not rule.get("seed_std") and not rule.get("seed_std_mean"):
        return ""
    source = f" ({rule['seed_noise_source']})" if rule.get("seed_noise_source") else ""
    return f", seed noise {rule['seed_std']:.3g}/{rule['seed_std_mean']:.3g} points per language/mean{source}"


#: The fewest soup members whose spread the gate trusts over the configured seed noise.
MIN_MEMBERS = 3


def rule_with_member_noise(rule: GateConfig, member_metrics: Sequence[Mapping[str, Any]]) -> tuple[GateConfig, str]:
    """``rule`` with the seed noise measured on a soup's members, and where the noise came from.

    Per language, the members' macro-F1 standard deviation (points); ``seed_std`` is their root
    mean square over languages and ``seed_std_mean`` the spread of the members' mean F1. With
    fewer than ``MIN_MEMBERS`` members (or ``seed_std_from_members`` off) the configured values stay.
    """
    if not rule.seed_std_from_members or len(member_metrics) < MIN_MEMBERS:
        why = "" if rule.seed_std_from_members or not member_metrics else ", gate.seed_std_from_members is off"
        few = f", {len(member_metrics)} soup members" if 0 < len(member_metrics) < MIN_MEMBERS else ""
        return rule, f"configured{few}{why}"
    languages = sorted(set.intersection(*(set(m["per_language"]) for m in member_metrics)))
    per_language = [np.std([100 * m["per_language"][lang]["f1"] for m in member_metrics], ddof=1) for lang in languages]
    means = [100 * np.mean([m["per_language"][lang]["f1"] for lang in languages]) for m in member_metrics]
    measured = rule.model_copy(update={
        "seed_std": float(np.sqrt(np.mean(np.square(per_language)))), "seed_std_mean": float(np.std(means, ddof=1)),
    })
    return measured, f"measured on {len(member_metrics)} soup members"


def rule_text(rule: Mapping[str, Any]) -> str:
    if rule["mode"] == "noise_aware":
        return (
            f"no credible drop over {rule['max_drop']:g} points in any language and mean gain over "
            f"+{rule['min_gain']:g} points, at confidence {rule['confidence']:g} (paired bootstrap, Holm"
            f"{noise_text(rule)})"
        )
    if rule["mode"] == "all_improve":
        text = f"every language +{rule['min_gain']:g} points"
    else:
        text = f"no language drops more than {rule['max_drop']:g} points, mean +{rule['min_gain']:g} points"
    if rule.get("bootstrap_confidence"):
        text += f", bootstrap confidence {rule['bootstrap_confidence']:g}"
    return text


def drop_p_value(deltas: np.ndarray, max_drop: float) -> float:
    """Bootstrap p-value of "the drop is at most ``max_drop``": the share of resamples that agree (+1 smoothed)."""
    return float((1 + np.sum(deltas >= -max_drop - _EPS)) / (1 + len(deltas)))


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


def _noise_scale(reference_kind: str) -> float:
    return math.sqrt(2.0 if reference_kind == "champion" else 1.0)


def seed_noise(
    rule: GateConfig, reference_kind: str, languages: Sequence[str], resamples: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draws of training-seed noise (points) to add to the bootstrap deltas: per language, and of the mean.

    Two trained versions each carry their own seed's luck, so their difference has twice the
    variance (``seed_std`` squared); the base model zero-shot is not trained, so once.
    """
    scale = _noise_scale(reference_kind)
    rng = np.random.default_rng([rule.seed, 1])  # a stream apart from the bootstrap's
    per_language = {language: scale * rule.seed_std * rng.standard_normal(resamples) for language in languages}
    return per_language, scale * rule.seed_std_mean * rng.standard_normal(resamples)


def decide(
    candidate: Mapping[str, float],
    reference: Mapping[str, float],
    rule: GateConfig,
    reference_kind: str = "champion",
    candidate_version: str | None = None,
    champion_version: str | None = None,
    deltas: Mapping[str, np.ndarray] | None = None,
    rows: Mapping[str, int] | None = None,
) -> Decision:
    """Apply ``rule`` to per-language F1 (0..1).

    ``deltas``: paired bootstrap samples per language (points), which give the intervals and
    the noise-aware tests; ``rows``: test rows per language (for "rows needed"). Without
    ``deltas`` the scores are taken as exact (no test noise), so ``noise_aware`` reduces to
    the point-estimate rule; ``gate_predictions`` always passes them.
    """
    reasons: list[str] = []
    alpha = 1 - rule.confidence
    languages = sorted(set(candidate) | set(reference))
    noise, mean_noise = {}, None
    if deltas:
        noise, mean_noise = seed_noise(rule, reference_kind, sorted(deltas), len(next(iter(deltas.values()))))
    table: list[dict[str, Any]] = []
    for language in languages:
        if language not in candidate or language not in reference:
            side = "candidate" if language not in candidate else "reference"
            reasons.append(f"{language}: no {side} score, so the two are not comparable")
            continue
        row = {"language": language, "candidate": candidate[language], "reference": reference[language],
               "delta": 100 * (candidate[language] - reference[language]), "ci_low": None, "ci_high": None,
               "p_better": None, "p_drop": None, "rows": (rows or {}).get(language)}
        if deltas and language in deltas:
            noisy = deltas[language] + noise[language]
            row.update(_interval(noisy, alpha))
            if rule.mode == "noise_aware":
                row["p_drop"] = drop_p_value(noisy, rule.max_drop)
        table.append(row)
    if not table:
        reasons.append("no language has both scores")
    mean_c = float(np.mean([r["candidate"] for r in table])) if table else 0.0
    mean_r = float(np.mean([r["reference"] for r in table])) if table else 0.0
    mean = {"candidate": mean_c, "reference": mean_r, "delta": 100 * (mean_c - mean_r),
            "ci_low": None, "ci_high": None, "p_better": None}
    mean_deltas = None
    if deltas and table and all(r["language"] in deltas for r in table):
        mean_deltas = np.mean([deltas[r["language"]] for r in table], axis=0)  # the test rows' noise alone
        mean.update(_interval(mean_deltas + mean_noise, alpha))
    if rule.mode == "noise_aware":
        seed_spread = _noise_scale(reference_kind) * rule.seed_std_mean if mean_deltas is not None else 0.0
        outcome = _noise_aware(table, mean, mean_deltas, seed_spread, rule, reasons)
    else:
        outcome = _point_rule(table, mean, rule, reasons)
    if outcome == "promoted":
        reasons.append(
            f"passes: mean {mean['delta']:+.2f} points{' ' + interval_text(mean) if mean['ci_low'] is not None else ''}, "
            f"worst language {min(r['delta'] for r in table):+.1f} points"
        )
    return Decision(
        promote=outcome == "promoted",
        reference=reference_kind,
        candidate_version=candidate_version,
        champion_version=champion_version,
        rule=rule.model_dump(mode="json"),
        languages=table,
        mean=mean,
        reasons=reasons,
        outcome=outcome,
    )


def _interval(deltas: np.ndarray, alpha: float) -> dict[str, float]:
    """Each end a one-sided (1 - alpha) bound, so the mean passes exactly when ``ci_low`` clears min_gain."""
    return {"ci_low": float(np.quantile(deltas, alpha)), "ci_high": float(np.quantile(deltas, 1 - alpha)),
            "p_better": float(np.mean(deltas > _EPS))}


def _point_rule(table: list[dict[str, Any]], mean: dict[str, Any], rule: GateConfig, reasons: list[str]) -> str:
    """``no_regression`` and ``all_improve`` on point estimates, with the optional bootstrap share."""

    def confident(name: str, p: float | None) -> None:
        # Fail safe: a rule that asks for a bootstrap never passes without one.
        need = rule.bootstrap_confidence
        if need and p is None:
            reasons.append(f"{name}: no paired predictions for the bootstrap the rule asks for")
        elif need and p < need:
            reasons.append(f"{name} is better in only {p:.1%} of bootstrap resamples (need {need:.0%})")

    for row in table:
        if row["delta"] < -rule.max_drop - _EPS:
            reasons.append(f"{row['language']} drops {row['delta']:+.1f} points (tolerated: {rule.max_drop:g})")
        elif rule.mode == "all_improve" and row["delta"] < rule.min_gain - _EPS:
            reasons.append(f"{row['language']} gains {row['delta']:+.1f} points, below the required +{rule.min_gain:g}")
        elif rule.mode == "all_improve":
            confident(row["language"], row["p_better"])
    if rule.mode == "no_regression":
        if mean["delta"] < rule.min_gain - _EPS:
            reasons.append(f"mean gains {mean['delta']:+.2f} points, below the required +{rule.min_gain:g}")
        else:
            confident("mean", mean["p_better"])
    return "rejected" if reasons else "promoted"


def _noise_aware(
    table: list[dict[str, Any]], mean: dict[str, Any], mean_deltas: np.ndarray | None, seed_spread: float,
    rule: GateConfig, reasons: list[str],
) -> str:
    """Credible drops (Holm) reject; a confident mean gain promotes; a mean credibly short of it rejects;
    otherwise the power of the test rows plus the seed noise (``seed_spread``) decides between
    inconclusive and rejected."""
    blocked = bool(reasons)  # a language without both scores
    alpha = 1 - rule.confidence
    if mean_deltas is None:  # exact scores: the point-estimate rule, in this rule's words
        for row in table:
            row["p_drop"] = None  # some languages lack resamples: no family to correct over
            if row["delta"] < -rule.max_drop - _EPS:
                reasons.append(f"{row['language']} drops {row['delta']:+.1f} points (tolerated: {rule.max_drop:g})")
        if mean["delta"] <= rule.min_gain + _EPS:
            reasons.append(f"mean gains {mean['delta']:+.2f} points, not above the required +{rule.min_gain:g}")
        return "rejected" if reasons else "promoted"
    adjusted = holm({row["language"]: row["p_drop"] for row in table})
    for row in table:
        row["p_drop"] = adjusted[row["language"]]
        if row["p_drop"] < alpha:
            reasons.append(
                f"{row['language']} drops {row['delta']:+.1f} points {interval_text(row)}: credibly more than "
                f"{rule.max_drop:g} (Holm-adjusted p {row['p_drop']:.3f} < {alpha:.3g})"
            )
    if reasons or blocked:
        return "rejected"
    if mean["ci_low"] > rule.min_gain + _EPS:
        return "promoted"
    spread = float(np.std(mean_deltas))
    z = NormalDist().inv_cdf(rule.confidence) + NormalDist().inv_cdf(rule.power)
    detectable = rule.min_gain + z * math.hypot(spread, seed_spread)
    short = (
        f"mean gains {mean['delta']:+.2f} points {interval_text(mean)}, whose lower bound is below the required "
        f"+{rule.min_gain:g} (confidence {rule.confidence:g})"
    )
    if detectable > rule.min_gain + rule.detectable_margin + _EPS and mean["ci_high"] >= rule.min_gain - _EPS:
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
    if mean["ci_high"] < rule.min_gain - _EPS:
        reasons.append(f"{short}; so is its upper bound: credibly short of it")
    else:
        reasons.append(f"{short}; the test rows could confirm a true gain of {detectable:.1f} points, so this is no gain")
    return "rejected"


@dataclass(frozen=True)
class ChampionRecord:
    """What the registry stores about the champion: enough to tell whether its numbers are fresh."""

    version: str
    data_version: str | None
    test_set: str | None


#: A predictions table: ``id, language, label, pred`` (the evaluate step's output).
Evaluator = Callable[[], pd.DataFrame]


@dataclass
class Reference:
    kind: str  # "champion" or "base_zero_shot"
    version: str | None
    predictions: pd.DataFrame
    source: str  # "stored", "re-evaluated" or "measured"


def choose_reference(
    champion: ChampionRecord | None,
    data_version: str,
    test_set: str,
    stored: Callable[[ChampionRecord], pd.DataFrame | None],
    evaluate_champion: Callable[[ChampionRecord], pd.DataFrame],
    evaluate_base: Evaluator,
) -> Reference:
    """The reference predictions on the candidate's test rows; never stale numbers.

    The champion's stored predictions count only when they come from the same data version and
    the same test rows; otherwise the champion is scored again now. Without a champion, the
    base model is scored zero-shot in this run.
    """
    if champion is None:
        return Reference("base_zero_shot", None, evaluate_base(), "measured")
    if champion.data_version == data_version and champion.test_set == test_set:
        predictions = stored(champion)
        if predictions is not None:
            return Reference("champion", champion.version, predictions, "stored")
    return Reference("champion", champion.version, evaluate_champion(champion), "re-evaluated")


def fingerprint_rows(predictions: pd.DataFrame) -> str:
    """sha256 of the evaluated rows (id, language, label), order-free."""
    lines = sorted(f"{r.id}\t{r.language}\t{r.label}" for r in predictions[["id", "language", "label"]].itertuples(index=False))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def per_language_f1(predictions: pd.DataFrame) -> dict[str, float]:
    report = evaluate_predictions(predictions["language"], predictions["label"].astype(int), predictions["pred"].astype(int))
    return {row.language: float(row.f1_macro) for row in report.table.itertuples(index=False)}


def gate_predictions(
    candidate: pd.DataFrame,
    reference: Reference,
    rule: GateConfig,
    candidate_version: str | None,
) -> Decision:
    """Decide on two predictions tables of the same rows (joined by id).

    Always bootstraps the paired rows (``rule.bootstrap_resamples``, seeded by ``rule.seed``),
    so every language row carries its interval, whatever the mode.
    """
    joined = paired_rows(candidate, reference.predictions)
    per_language = {
        lang: (group["label"].to_numpy(), group["pred"].to_numpy(), group["ref_pred"].to_numpy())
        for lang, group in joined.groupby("language", sort=True)
    }
    decision = decide(
        per_language_f1(joined),
        per_language_f1(joined.drop(columns="pred").rename(columns={"ref_pred": "pred"})),
        rule,
        reference.kind,
        candidate_version,
        reference.version,
        bootstrap_deltas(per_language, rule.bootstrap_resamples, rule.seed),
        {lang: len(labels) for lang, (labels, _, _) in per_language.items()},
    )
    decision.reasons.append(f"reference scores: {reference.source}")
    return decision


def paired_rows(candidate: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """``id, language, label, pred, ref_pred``: the candidate's rows with the reference's prediction of each."""
    joined = candidate[["id", "language", "label", "pred"]].merge(
        reference[["id", "pred"]].rename(columns={"pred": "ref_pred"}), on="id", how="left"
    )
    if joined["ref_pred"].isna().any():
        missing = int(joined["ref_pred"].isna().sum())
        raise ValueError(f"reference predictions miss {missing} of the candidate's {len(joined)} test rows")
    return joined.astype({"label": int, "pred": int, "ref_pred": int})
