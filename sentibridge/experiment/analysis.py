"""An experiment's statistics: each recipe's mean and seed spread, and each difference against
the first recipe with an interval carrying both the test rows' and the seeds' noise.

F1 is in 0..1 as the pipeline logs it; differences are in points (x100). The functions come
from ``sentibridge.statistics``, the ones the gate and ``compare`` use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentibridge.config import GateConfig
from sentibridge.experiment.grid import RunRecord
from sentibridge.statistics import (
    combined_interval, holm, macro_f1, paired_bootstrap, pooled_seed_spread, seed_draws, seeds_needed, t_interval,
)
from sentibridge.tables import markdown_table

MEAN = "mean"


def analyse(
    records: Sequence[RunRecord], out: Path, reference: str, rule: GateConfig, effect: float,
) -> dict[str, Any]:
    """The report of finished runs (``records``, in plan order); ``reference`` is the first recipe.

    ``rule`` gives the confidence, power, bootstrap resamples and seed, and the configured
    seed noise used when a recipe has a single seed. ``effect``: the difference (points) whose
    seeds-needed is reported.
    """
    ok = [r for r in records if r.ok]
    recipes = list(dict.fromkeys(r.recipe for r in records))
    frames = {(r.recipe, r.seed): r.predictions(out) for r in ok}
    rows, left_out = _shared_rows(frames)
    report: dict[str, Any] = {
        "reference": reference, "confidence": rule.confidence, "power": rule.power, "effect_points": effect,
        "test_rows": len(rows), "runs": [r.to_dict() for r in records], "left_out": left_out,
        "recipes": {}, "comparisons": {},
    }
    if rows.empty:
        return report
    languages = sorted(rows["language"].unique())
    preds = {key: frame.set_index("id").loc[rows["id"], "pred"].to_numpy() for key, frame in frames.items()
             if key not in left_out}
    seeds = {recipe: [s for (name, s) in preds if name == recipe] for recipe in recipes}
    masks = {lang: (rows["language"] == lang).to_numpy() for lang in languages}
    y = rows["label"].to_numpy()
    f1 = {key: {lang: macro_f1(y[m], p[m]) for lang, m in masks.items()} for key, p in preds.items()}
    for recipe in recipes:
        report["recipes"][recipe] = _recipe_summary(recipe, seeds[recipe], f1, languages, rule.confidence)
        report["recipes"][recipe]["failed"] = [
            {"seed": r.seed, "error": r.error} for r in records if r.recipe == recipe and not r.ok
        ]
    # What gate.seed_std / gate.seed_std_mean should be for recipes like these (bench/seed_noise.py).
    report["seed_noise"] = pooled_seed_spread([[f1[(recipe, s)] for s in seeds[recipe]] for recipe in recipes])
    for recipe in recipes:
        if recipe == reference or not seeds[recipe] or not seeds.get(reference):
            continue
        report["comparisons"][recipe] = _compare(
            recipe, reference, seeds, preds, f1, y, masks, rule, effect
        )
    return report


def _shared_rows(frames: dict[tuple[str, int], pd.DataFrame]) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """The first run's test rows, and the runs scored on other rows (left out, with a note)."""
    if not frames:
        return pd.DataFrame(columns=["id", "language", "label"]), []
    first = next(iter(frames.values()))
    rows = first[["id", "language", "label"]].sort_values("id").reset_index(drop=True)
    left_out = []
    for key, frame in frames.items():
        theirs = frame[["id", "language", "label"]].sort_values("id").reset_index(drop=True)
        if not theirs.equals(rows):
            left_out.append(key)
    return rows, left_out


def _recipe_summary(
    recipe: str, seeds: list[int], f1: dict, languages: list[str], confidence: float,
) -> dict[str, Any]:
    per_language = {}
    for lang in [*languages, MEAN]:
        values = {s: (_mean_f1(f1[(recipe, s)]) if lang == MEAN else f1[(recipe, s)][lang]) for s in seeds}
        spread = t_interval(list(values.values()), confidence) if values else None
        per_language[lang] = {
            "f1": spread["mean"] if spread else None,
            "sd_points": 100 * spread["sd"] if spread and spread["sd"] is not None else None,
            "per_seed": values,
        }
    return {"seeds": seeds, "per_language": per_language}


def _mean_f1(per_language: dict[str, float]) -> float:
    return float(np.mean(list(per_language.values())))


def _compare(
    recipe: str, reference: str, seeds: dict[str, list[int]], preds: dict, f1: dict, y: np.ndarray,
    masks: dict[str, np.ndarray], rule: GateConfig, effect: float,
) -> dict[str, Any]:
    """``recipe`` - ``reference`` per language and for the mean (points), with both noises."""
    common = [s for s in seeds[recipe] if s in seeds[reference]]
    n_a, n_b = len(seeds[reference]), len(seeds[recipe])
    out: dict[str, Any] = {"paired_seeds": common}
    row_deltas: dict[str, np.ndarray] = {}
    for k, (lang, mask) in enumerate(masks.items()):
        cand = np.stack([preds[(recipe, s)][mask] for s in seeds[recipe]])
        ref = np.stack([preds[(reference, s)][mask] for s in seeds[reference]])
        row_deltas[lang] = paired_bootstrap(y[mask], cand, ref, rule.bootstrap_resamples, rule.seed + k)
        per_seed = [100 * (f1[(recipe, s)][lang] - f1[(reference, s)][lang]) for s in common]
        out[lang] = _difference(
            recipe, reference, seeds, f1, lang, per_seed, row_deltas[lang], rule.seed_std, n_a, n_b, rule, effect, k
        )
    per_seed_mean = [100 * (_mean_f1(f1[(recipe, s)]) - _mean_f1(f1[(reference, s)])) for s in common]
    mean_rows = np.mean(list(row_deltas.values()), axis=0)
    out[MEAN] = _difference(
        recipe, reference, seeds, f1, MEAN, per_seed_mean, mean_rows, rule.seed_std_mean, n_a, n_b, rule, effect,
        len(masks),
    )
    adjusted = holm({lang: out[lang]["p"] for lang in masks})
    alpha = 1 - rule.confidence
    for lang in masks:
        out[lang]["p_holm"] = adjusted[lang]
        out[lang]["significant"] = adjusted[lang] < alpha
    out[MEAN]["significant"] = out[MEAN]["p"] < alpha
    return out


def _difference(
    recipe: str, reference: str, seeds: dict[str, list[int]], f1: dict, lang: str, per_seed: list[float],
    rows: np.ndarray, configured_sd: float, n_a: int, n_b: int, rule: GateConfig, effect: float, stream: int,
) -> dict[str, Any]:
    def side(name: str) -> float:
        values = [(_mean_f1(f1[(name, s)]) if lang == MEAN else f1[(name, s)][lang]) for s in seeds[name]]
        return float(np.mean(values))

    delta = 100 * (side(recipe) - side(reference))
    seeds_t = t_interval(per_seed, rule.confidence) if per_seed else None
    if seeds_t and seeds_t["se"] is not None:
        # Measured: the spread of the per-seed differences (seed luck of both recipes).
        noise_source, one_seed_sd = "measured", seeds_t["sd"]
        draws = seed_draws(seeds_t["se"], len(per_seed) - 1, len(rows), rule.seed + stream)
    else:
        # One seed: the configured spread of one recipe's seed luck, once per side and seed.
        noise_source, one_seed_sd = "configured", math.sqrt(2) * configured_sd
        draws = seed_draws(configured_sd * math.sqrt(1 / n_a + 1 / n_b), None, len(rows), rule.seed + stream)
    alpha = 1 - rule.confidence
    rows_sd = float(np.std(rows))
    return {
        "delta_points": delta,
        "per_seed_points": per_seed,
        "seeds_interval": {"low": seeds_t["low"], "high": seeds_t["high"]} if seeds_t else None,
        "rows_interval": {"low": float(np.quantile(rows, alpha / 2)), "high": float(np.quantile(rows, 1 - alpha / 2))},
        "rows_sd_points": rows_sd,
        "seed_sd_points": one_seed_sd,
        "seed_noise": noise_source,
        **combined_interval(rows, draws, rule.confidence),
        "seeds_needed": seeds_needed(effect, one_seed_sd, rows_sd, rule.confidence, rule.power),
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: recipes side by side, then each difference against the reference."""
    name = report.get("name", "experiment")
    lines = [f"# Experiment {name}", ""]
    recipes = report["recipes"]
    if not recipes or not report["test_rows"]:
        return "\n".join([*lines, "No finished run yet.", ""])
    pct = f"{100 * report['confidence']:g}%"
    lines += [f"{report['test_rows']} test rows, the same for every run. F1 is macro-F1 x100: the mean over seeds "
              "± its seed standard deviation.", ""]
    languages = [lang for lang in next(iter(recipes.values()))["per_language"]]
    headers = ["language", *[f"{r} ({len(v['seeds'])} seeds)" for r, v in recipes.items()]]
    table = [[lang, *[_f1_cell(v["per_language"][lang]) for v in recipes.values()]] for lang in languages]
    lines += [markdown_table(headers, table), ""]
    noise = report.get("seed_noise")
    if noise:
        lines += [f"Seed noise pooled over the recipes ({noise['degrees_of_freedom']} degrees of freedom): "
                  f"gate.seed_std {noise['per_language_points']:g}, gate.seed_std_mean {noise['mean_points']:g} points.", ""]
    for recipe, comparison in report["comparisons"].items():
        lines += [f"## {recipe} - {report['reference']} (points)", "",
                  f"Seed-paired over {len(comparison['paired_seeds'])} seeds. Intervals at {pct}: over seeds (t), over "
                  "the test rows (paired bootstrap), and both noises together; p is two-sided, Holm-adjusted across "
                  f"languages; seeds needed for a true {report['effect_points']:g}-point difference "
                  f"(power {report['power']:g}).", ""]
        headers = ["language", "delta", "seeds", "rows", "both", "p (Holm)", "seeds needed"]
        table = [[lang, f"{d['delta_points']:+.2f}", _interval(d["seeds_interval"]), _interval(d["rows_interval"]),
                  _interval(d) + ("" if d["seed_noise"] == "measured" else " *"), _p_cell(d), d["seeds_needed"] or "∞"]
                 for lang, d in comparison.items() if lang != "paired_seeds"]
        lines += [markdown_table(headers, table), ""]
        if any(d["seed_noise"] != "measured" for k, d in comparison.items() if k != "paired_seeds"):
            lines += ["\\* one paired seed: the seed noise is the configured gate.seed_std, not measured.", ""]
    precisions: dict[str, list[str]] = {}
    for run in report["runs"]:
        if run["status"] == "ok":
            precision = (run.get("extra") or {}).get("train_precision") or "not recorded"
            precisions.setdefault(precision, []).append(f"{run['recipe']} seed {run['seed']}")
    if len(precisions) > 1:
        lines += ["Runs trained at different precisions (CPUs with and without native bf16), which alone can move "
                  "F1: " + "; ".join(f"{p}: {', '.join(runs)}" for p, runs in sorted(precisions.items())) + ".", ""]
    failed = [r for r in report["runs"] if r["status"] != "ok"]
    if failed:
        lines += ["## Failed runs", ""] + [f"- {r['recipe']} seed {r['seed']}: {r['error']}" for r in failed] + [""]
    if report["left_out"]:
        lines += ["Left out (scored other test rows): " + ", ".join(f"{r} seed {s}" for r, s in report["left_out"]), ""]
    return "\n".join(lines)


def _f1_cell(cell: dict[str, Any]) -> str:
    if cell["f1"] is None:
        return "-"
    sd = f" ± {cell['sd_points']:.1f}" if cell["sd_points"] is not None else ""
    return f"{100 * cell['f1']:.1f}{sd}"


def _interval(d: dict[str, Any] | None) -> str:
    if not d or d.get("low") is None:
        return "-"
    return f"[{d['low']:+.1f}, {d['high']:+.1f}]"


def _p_cell(d: dict[str, Any]) -> str:
    p = d.get("p_holm", d["p"])
    return f"{p:.3f}{' ✓' if d['significant'] else ''}"
