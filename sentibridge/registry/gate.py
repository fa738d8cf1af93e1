"""The promotion gate: does a candidate beat the reference (the champion, or the base model)?

Scores are per-language macro-F1 in 0..1, measured on the same test rows; the rule speaks in
F1 points (x100), as people do. Two modes:

- ``no_regression`` (default): no language drops by more than ``max_drop`` points and the mean
  over languages gains at least ``min_gain`` points;
- ``all_improve``: every language gains at least ``min_gain`` points.

With ``bootstrap_confidence`` set, every gain the mode needs must also hold in that share of
paired bootstrap resamples of the test rows, so noise alone cannot promote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from sentibridge.config import GateConfig
from sentibridge.inference.evaluation import evaluate_predictions
from sentibridge.tables import text_table

#: Differences below this many points are float noise, not gains or drops.
_EPS = 1e-9


@dataclass
class Decision:
    """A gate decision: the per-language table, the rule, each reason, and both versions."""

    promote: bool
    reference: str  # "champion" or "base_zero_shot"
    candidate_version: str | None
    champion_version: str | None
    rule: dict[str, Any]
    languages: list[dict[str, Any]]
    mean: dict[str, float]
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> "Decision":
        return cls(**{k: payload[k] for k in cls.__dataclass_fields__})

    def text(self) -> str:
        """The decision as the CLI prints it: a verdict line, the table, the reasons."""
        against = f"champion v{self.champion_version}" if self.reference == "champion" else "base model (zero-shot)"
        verdict = "PROMOTED" if self.promote else "NOT PROMOTED"
        lines = [f"gate: {verdict} candidate v{self.candidate_version} against {against} (rule: {rule_text(self.rule)})"]
        has_p = any(row.get("p_better") is not None for row in self.languages)
        rows = [
            [row["language"], 100 * row["candidate"], 100 * row["reference"], row["delta"]]
            + ([row.get("p_better")] if has_p else [])
            for row in [*self.languages, {"language": "mean", **self.mean}]
        ]
        headers = ["language", "candidate", "reference", "delta"] + (["P(better)"] if has_p else [])
        table = text_table(headers, rows, floatfmt=["", ".1f", ".1f", "+.1f", ".3f"][: len(headers)])
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
        against = f"champion v{self.champion_version}" if self.reference == "champion" else "the base model (zero-shot)"
        has_p = any(row.get("p_better") is not None for row in [*self.languages, self.mean])
        lines = [
            f"### Gate: {'promoted' if self.promote else 'not promoted'}",
            "",
            f"Candidate v{self.candidate_version} against {against}; rule: {rule_text(self.rule)}.",
            "",
            "| language | candidate F1 | reference F1 | delta (points) |" + (" P(better) |" if has_p else ""),
            "|---|---:|---:|---:|" + ("---:|" if has_p else ""),
        ]

        def cells(row: Mapping[str, Any]) -> list[str]:
            out = [f"{100 * row['candidate']:.1f}", f"{100 * row['reference']:.1f}", f"{row['delta']:+.1f}"]
            if has_p:
                out.append("" if row.get("p_better") is None else f"{row['p_better']:.3f}")
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

    def run_name(self) -> str:
        """A run name people can tell apart: ``v3 promoted (mean F1 71.2)``, ``v4 rejected: fr -2.1``."""
        version = f"v{self.candidate_version}"
        if self.promote:
            return f"{version} promoted (mean F1 {100 * self.mean['candidate']:.1f})"
        all_improve = self.rule["mode"] == "all_improve"
        failing = sorted(
            (row for row in self.languages
             if row["delta"] < -self.rule["max_drop"] - _EPS or (all_improve and row["delta"] < self.rule["min_gain"] - _EPS)),
            key=lambda row: row["delta"],
        )
        if failing:
            named = ", ".join(f"{row['language']} {row['delta']:+.1f}" for row in failing[:2])
            return f"{version} rejected: {named}" + (f" (+{len(failing) - 2} more)" if len(failing) > 2 else "")
        # No language failed: the mean fell short, or the bootstrap was not confident enough.
        unsure = self.rule.get("bootstrap_confidence") and self.mean["delta"] >= self.rule["min_gain"] - _EPS
        return f"{version} rejected: mean {self.mean['delta']:+.1f}" + (" (not confident)" if unsure else "")


def rule_text(rule: Mapping[str, Any]) -> str:
    if rule["mode"] == "all_improve":
        text = f"every language +{rule['min_gain']:g} points"
    else:
        text = f"no language drops more than {rule['max_drop']:g} points, mean +{rule['min_gain']:g} points"
    if rule.get("bootstrap_confidence"):
        text += f", bootstrap confidence {rule['bootstrap_confidence']:g}"
    return text


def paired_bootstrap(
    labels: Sequence[int], candidate: Sequence[int], reference: Sequence[int], resamples: int, seed: int
) -> np.ndarray:
    """Macro-F1 differences (candidate - reference, in points) over paired resamples of the rows.

    Both models are scored on the same resampled rows, so the spread is the test set's noise,
    not the difference between two independent draws.
    """
    y, a, b = (np.asarray(x) for x in (labels, candidate, reference))
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for i in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        deltas[i] = 100 * (
            f1_score(y[pick], a[pick], average="macro", zero_division=0)
            - f1_score(y[pick], b[pick], average="macro", zero_division=0)
        )
    return deltas


def bootstrap_deltas(
    predictions: Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]], resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Per language ``(labels, candidate preds, reference preds)`` -> its resampled deltas."""
    return {
        language: paired_bootstrap(y, a, b, resamples, seed + k)
        for k, (language, (y, a, b)) in enumerate(sorted(predictions.items()))
    }


def decide(
    candidate: Mapping[str, float],
    reference: Mapping[str, float],
    rule: GateConfig,
    reference_kind: str = "champion",
    candidate_version: str | None = None,
    champion_version: str | None = None,
    deltas: Mapping[str, np.ndarray] | None = None,
) -> Decision:
    """Apply ``rule`` to per-language F1 (0..1). ``deltas``: bootstrap samples per language (points)."""
    reasons: list[str] = []
    languages = sorted(set(candidate) | set(reference))
    rows: list[dict[str, Any]] = []
    for language in languages:
        if language not in candidate or language not in reference:
            side = "candidate" if language not in candidate else "reference"
            reasons.append(f"{language}: no {side} score, so the two are not comparable")
            continue
        delta = 100 * (candidate[language] - reference[language])
        p = float(np.mean(deltas[language] > 0)) if deltas and language in deltas else None
        rows.append({"language": language, "candidate": candidate[language], "reference": reference[language], "delta": delta, "p_better": p})
    if not rows:
        reasons.append("no language has both scores")
    mean_c = float(np.mean([r["candidate"] for r in rows])) if rows else 0.0
    mean_r = float(np.mean([r["reference"] for r in rows])) if rows else 0.0
    mean_delta = 100 * (mean_c - mean_r)
    mean_p = None
    if deltas and rows and all(r["language"] in deltas for r in rows):
        mean_p = float(np.mean(np.mean([deltas[r["language"]] for r in rows], axis=0) > 0))

    def confident(name: str, p: float | None) -> None:
        # Fail safe: a rule that asks for a bootstrap never passes without one.
        need = rule.bootstrap_confidence
        if need and p is None:
            reasons.append(f"{name}: no paired predictions for the bootstrap the rule asks for")
        elif need and p < need:
            reasons.append(f"{name} is better in only {p:.1%} of bootstrap resamples (need {need:.0%})")

    for row in rows:
        if row["delta"] < -rule.max_drop - _EPS:
            reasons.append(f"{row['language']} drops {row['delta']:+.1f} points (tolerated: {rule.max_drop:g})")
        elif rule.mode == "all_improve" and row["delta"] < rule.min_gain - _EPS:
            reasons.append(f"{row['language']} gains {row['delta']:+.1f} points, below the required +{rule.min_gain:g}")
        elif rule.mode == "all_improve":
            confident(row["language"], row["p_better"])
    if rule.mode == "no_regression":
        if mean_delta < rule.min_gain - _EPS:
            reasons.append(f"mean gains {mean_delta:+.2f} points, below the required +{rule.min_gain:g}")
        else:
            confident("mean", mean_p)
    promote = not reasons
    if promote:
        reasons.append(
            f"passes: mean {mean_delta:+.2f} points, worst language {min(r['delta'] for r in rows):+.1f} points"
        )
    return Decision(
        promote=promote,
        reference=reference_kind,
        candidate_version=candidate_version,
        champion_version=champion_version,
        rule=rule.model_dump(mode="json"),
        languages=rows,
        mean={"candidate": mean_c, "reference": mean_r, "delta": mean_delta, "p_better": mean_p},
        reasons=reasons,
    )


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
    """Decide on two predictions tables of the same rows (joined by id); ``rule.seed`` seeds the bootstrap."""
    joined = candidate[["id", "language", "label", "pred"]].merge(
        reference.predictions[["id", "pred"]].rename(columns={"pred": "ref_pred"}), on="id", how="left"
    )
    if joined["ref_pred"].isna().any():
        missing = int(joined["ref_pred"].isna().sum())
        raise ValueError(f"reference predictions miss {missing} of the candidate's {len(joined)} test rows")
    joined = joined.assign(ref_pred=joined["ref_pred"].astype(int))
    deltas = None
    if rule.bootstrap_confidence:
        per_language = {
            lang: (group["label"].astype(int).to_numpy(), group["pred"].astype(int).to_numpy(), group["ref_pred"].to_numpy())
            for lang, group in joined.groupby("language", sort=True)
        }
        deltas = bootstrap_deltas(per_language, rule.bootstrap_resamples, rule.seed)
    decision = decide(
        per_language_f1(joined),
        per_language_f1(joined.drop(columns="pred").rename(columns={"ref_pred": "pred"})),
        rule,
        reference.kind,
        candidate_version,
        reference.version,
        deltas,
    )
    decision.reasons.append(f"reference scores: {reference.source}")
    return decision
