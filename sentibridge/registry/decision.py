"""A gate decision and how people read it: the CLI's text, Markdown, the run name, registry tags.

Language rows and the mean carry per-language macro-F1 (0..1) of both models and their delta,
interval (``ci_low``..``ci_high``) in F1 points (x100), and P(better); the rules
(``registry/rules.py``) fill them and give the reasons.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sentibridge.artifacts import DECISION
from sentibridge.registry.rules import RULES, interval_text, rule_text
from sentibridge.statistics import EPS as _EPS
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
                          f"the run's `{DECISION}` has them all._"]
        lines += ["", "**Reasons**", ""] + [f"- {reason}" for reason in reasons]
        if len(reasons) < len(self.reasons):
            lines.append(f"- _{len(self.reasons) - len(reasons)} more in the run's `{DECISION}`_")
        return "\n".join(lines)

    def failing_languages(self) -> list[dict[str, Any]]:
        """The language rows that block promotion by themselves, worst first."""
        alpha = 1 - self.rule.get("confidence", 0.95)

        def fails(row: Mapping[str, Any]) -> bool:
            if row.get("p_drop") is not None:  # noise_aware with predictions: only credible drops count
                return row["p_drop"] < alpha
            if row["delta"] < -self.rule["max_drop"] - _EPS:
                return True
            return RULES[self.rule["mode"]].every_language and row["delta"] < self.rule["min_gain"] - _EPS

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
        # No language failed: the mean fell short, or it was not confident enough. Languages carry
        # p(drop) only where the rule tested the mean's credibility too (noise_aware, bootstrapped).
        unsure = (self._has("p_drop") or self.rule.get("bootstrap_confidence")) and self.mean["delta"] >= self.rule["min_gain"] - _EPS
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

