"""The promotion gate: does a candidate beat the reference (the champion, or the base model)?

Scores are per-language macro-F1 in 0..1, measured on the same test rows; the rule speaks in
F1 points (x100), as people do. Per-language macro-F1 on a few hundred rows moves by points
between two training seeds, so every decision made from predictions gives each language's
delta an interval (``ci_low``..``ci_high``, points) and P(better), from a paired bootstrap of
the test rows, whatever the rule (``gate.mode``, one function each in ``registry/rules.py``).

The bootstrap sees only the test rows' noise. A retrain that changes nothing but the seed
still moves per-language F1 by points, so the intervals also carry training-seed noise:
``seed_std`` per language and ``seed_std_mean`` for the mean (the defaults measured on UMSAB by
``bench/gate_calibration.py``; ``bench/seed_noise.py`` measures any recipe); 0 turns it off.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sentibridge.config import GateConfig
from sentibridge.inference.evaluation import evaluate_predictions
from sentibridge.registry.decision import Decision
from sentibridge.registry.reference import Reference
from sentibridge.registry.rules import RULES, Evidence, interval_text
from sentibridge.statistics import bootstrap_deltas, one_sided_interval


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
    """Apply ``rule`` (its ``mode`` picks the function in ``RULES``) to per-language F1 (0..1).

    ``deltas``: paired bootstrap samples per language (points), which give the intervals and
    the noise-aware tests; ``rows``: test rows per language (for "rows needed"). Without
    ``deltas`` the scores are taken as exact (no test noise), so ``noise_aware`` reduces to
    the point-estimate rule; ``gate_predictions`` always passes them.
    """
    reasons: list[str] = []
    evidence = _evidence(candidate, reference, rule, reference_kind, deltas or {}, rows or {}, reasons)
    table, mean = evidence.table, evidence.mean
    outcome = RULES[rule.mode].decide(evidence, rule, reasons)
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


def _evidence(
    candidate: Mapping[str, float], reference: Mapping[str, float], rule: GateConfig, reference_kind: str,
    deltas: Mapping[str, np.ndarray], rows: Mapping[str, int], reasons: list[str],
) -> Evidence:
    """Language rows and the mean with their intervals (test rows' and seed noise); a reason per language
    that only one side scored."""
    alpha = 1 - rule.confidence
    noise, mean_noise = {}, None
    if deltas:
        noise, mean_noise = seed_noise(rule, reference_kind, sorted(deltas), len(next(iter(deltas.values()))))
    table: list[dict[str, Any]] = []
    noisy: dict[str, np.ndarray] = {}
    for language in sorted(set(candidate) | set(reference)):
        if language not in candidate or language not in reference:
            side = "candidate" if language not in candidate else "reference"
            reasons.append(f"{language}: no {side} score, so the two are not comparable")
            continue
        row = {"language": language, "candidate": candidate[language], "reference": reference[language],
               "delta": 100 * (candidate[language] - reference[language]), "ci_low": None, "ci_high": None,
               "p_better": None, "p_drop": None, "rows": rows.get(language)}
        if language in deltas:
            noisy[language] = deltas[language] + noise[language]
            row.update(one_sided_interval(noisy[language], alpha))
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
        mean.update(one_sided_interval(mean_deltas + mean_noise, alpha))
    seed_spread = _noise_scale(reference_kind) * rule.seed_std_mean if mean_deltas is not None else 0.0
    return Evidence(table, mean, noisy, mean_deltas, seed_spread)


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
