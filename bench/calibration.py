"""Per-language label calibration on UMSAB: do offsets fitted on the val split raise test macro-F1?

The model scores the three label words; a language whose predictions lean to one label loses
macro-F1 even when its ranking is good. Calibration adds a per-language offset to each label's
log-probability, fitted on that language's val rows (never test), and predicts the argmax:

* ``prior``: offsets that make the mean predicted distribution on val match val's label shares
  (prior shift adjustment, no search over the metric);
* ``f1``: offsets on a grid (step 0.1, within +-4) that maximise val macro-F1, the smallest in
  norm among ties.

For each training seed, ``configs/umsab_cpu.yaml`` is trained through the real CLI (300 train
rows per language), the registered model scores the pipeline's val and test rows, and each
method's test F1 is compared with the uncalibrated one on the same rows: the gate's paired
bootstrap over test rows per seed, and a t interval over seeds for the mean change (the seed is
what varies between retrainings); both from ``sentibridge.statistics``. The uncalibrated F1 must equal the CLI's own evaluation (``rows_match_cli``).

    python -m bench.calibration                  # seeds 42 7 123: about 30 minutes per seed on 2 cores
    python -m bench.calibration --seeds 42 7
    python -m bench.calibration --report         # summarise the seeds scored so far
    python -m bench.calibration --seeds 123 5 --keep  # add seeds to those already in the result file
    python -m bench.calibration --config configs/umsab_full.yaml --seeds 42 \
        --work .sentibridge/calibration_full --out bench/results/calibration_full.json  # about 100 min with native bf16

Each seed's scores are saved under ``--work`` as Parquet when they are ready, so an interrupted
run resumes. Writes ``bench/results/calibration.json``. Exits 0 without writing anything when
UMSAB is absent.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import REPO, UMSAB, machine, merged_weights, run_cli, write_result
from sentibridge.config import Settings
from sentibridge.config_loading import load_settings
from sentibridge.data.ingest import read_dataset
from sentibridge.data.split import split_rows
from sentibridge.data.validation import validate_rows
from sentibridge.inference import label_calibration
from sentibridge.inference.predict import load_scorer
from sentibridge.labels import SCORE_COLUMNS
from sentibridge.statistics import bootstrap_deltas, macro_f1, t_interval

CONFIG = REPO / "configs" / "umsab_cpu.yaml"
METHODS = ("prior", "f1")
GRID = np.round(np.arange(-4.0, 4.0001, 0.1), 1)
BOOTSTRAP = 2000
CONFIDENCE = 0.95


def _log_probs(scores: pd.DataFrame) -> np.ndarray:
    return np.log(np.clip(scores[SCORE_COLUMNS].to_numpy(dtype=np.float64), 1e-30, None))


def prior_offsets(log_probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The package's ``eval.calibration: prior`` (``sentibridge/inference/label_calibration.py``)."""
    return label_calibration.prior_offsets(np.exp(log_probs), y)


def f1_offsets(log_probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The grid offsets (label 0 fixed at 0) with the best macro-F1 on ``y``; the smallest among ties."""
    best, best_key = np.zeros(3), (-1.0, 0.0)
    for b1 in GRID:
        for b2 in GRID:
            offsets = np.array([0.0, b1, b2])
            key = (round(macro_f1(y, np.argmax(log_probs + offsets, axis=1)), 12), -float(np.abs(offsets).sum()))
            if key > best_key:
                best, best_key = offsets, key
    return best


FIT = {"prior": prior_offsets, "f1": f1_offsets}


def calibrated_predictions(val: pd.DataFrame, test: pd.DataFrame, method: str) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Test predictions with per-language offsets fitted on val, and the offsets per language."""
    pred = np.argmax(_log_probs(test), axis=1)
    offsets = {}
    for language, rows in val.groupby("language", sort=True):
        fitted = FIT[method](_log_probs(rows), rows["label"].to_numpy(dtype=int))
        mask = (test["language"] == language).to_numpy()
        pred[mask] = np.argmax(_log_probs(test[mask]) + fitted, axis=1)
        offsets[str(language)] = [round(float(v), 3) for v in fitted]
    return pred, offsets


def per_language_f1(test: pd.DataFrame, pred: np.ndarray) -> dict[str, float]:
    y = test["label"].to_numpy(dtype=int)
    return {
        str(language): macro_f1(y[index], pred[index])
        for language, index in test.groupby("language", sort=True).indices.items()
    }


def mean_change(test: pd.DataFrame, base: np.ndarray, other: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Mean-over-languages macro-F1 change ``other - base`` (points) with a 95% interval.

    The interval is the gate's: each language's test rows resampled on their own
    (``bootstrap_deltas``), the languages' resampled changes averaged.
    """
    y = test["label"].to_numpy(dtype=int)
    per_language = {str(language): (y[index], other[index], base[index])
                    for language, index in test.groupby("language", sort=True).indices.items()}
    deltas = np.mean(list(bootstrap_deltas(per_language, BOOTSTRAP, seed).values()), axis=0)
    point = 100 * (statistics.fmean(per_language_f1(test, other).values()) - statistics.fmean(per_language_f1(test, base).values()))
    low, high = np.quantile(deltas, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return {"delta": point, "ci_low": float(low), "ci_high": float(high)}


def seed_result(val: pd.DataFrame, test: pd.DataFrame) -> dict:
    """Uncalibrated and calibrated per-language F1 of one seed, with paired intervals."""
    base = np.argmax(_log_probs(test), axis=1)
    out = {"f1": {"none": per_language_f1(test, base)}, "offsets": {}, "vs_none_points": {}}
    for method in METHODS:
        pred, offsets = calibrated_predictions(val, test, method)
        out["f1"][method] = per_language_f1(test, pred)
        out["offsets"][method] = offsets
        out["vs_none_points"][method] = mean_change(test, base, pred)
    return out


def over_seeds(seeds: Mapping[int, Mapping]) -> dict:
    """Per method: mean change of the language mean and per language over seeds, with a t interval."""
    summary = {}
    for method in METHODS:
        changes = [100 * (statistics.fmean(r["f1"][method].values()) - statistics.fmean(r["f1"]["none"].values()))
                   for r in seeds.values()]
        languages = sorted(next(iter(seeds.values()))["f1"]["none"])
        per_language = {lang: statistics.fmean(100 * (r["f1"][method][lang] - r["f1"]["none"][lang]) for r in seeds.values())
                        for lang in languages}
        row = {"mean_change_points": statistics.fmean(changes), "per_language_change_points": per_language,
               "seed_changes_points": changes}
        interval = t_interval(changes, CONFIDENCE)
        if interval["low"] is not None:
            row.update(ci_low=interval["low"], ci_high=interval["high"])
        summary[method] = row
    summary["none_mean_f1"] = statistics.fmean(statistics.fmean(r["f1"]["none"].values()) for r in seeds.values())
    return summary


def score_splits(weights: Path, settings: Settings, val: pd.DataFrame, test: pd.DataFrame, out: Path) -> None:
    """Score val and test with the merged weights in ``weights`` and save them to ``out`` (Parquet,
    a ``split`` column). Each split on its own, as the evaluate step scores them: in bf16 the padding
    of a batch moves the scores slightly, so mixing the splits would change which rows share a batch."""
    score = load_scorer(str(weights), settings.model, settings.eval.precision, settings.eval.batch_size)
    scored = pd.concat([score(rows).assign(split=name) for name, rows in (("val", val), ("test", test))],
                       ignore_index=True)
    scored.to_parquet(out, index=False)


def score_seed(seed: int, work: Path, val: pd.DataFrame, test: pd.DataFrame, config: Path = CONFIG) -> dict | None:
    """Train ``seed`` through the CLI (once), then score val and test with its registered weights (once)."""
    run_path, scores = work / f"run_seed{seed}.json", work / f"scores_seed{seed}.parquet"
    if not run_path.is_file():
        code, payload, seconds = run_cli(config, [f"train.seed={seed}"], work / "home")
        if code != 0 or payload is None or not payload.get("ok"):
            print(f"seed {seed}: training failed (exit {code})", flush=True)
            return None
        run = {**{k: payload.get(k) for k in ("tracking_uri", "registered_model", "model_version")},
               # The CLI's F1 of the raw scores; a CLI that calibrates reports its calibrated F1 too.
               "cli_f1": (payload.get("calibration") or {}).get("uncalibrated_per_language")
               or {lang: v["f1"] for lang, v in payload["per_language"].items()},
               "cli_calibrated_f1": {lang: v["f1"] for lang, v in payload["per_language"].items()}
               if (payload.get("calibration") or {}).get("offsets") else None,
               "train": payload.get("train"), "wall_seconds": seconds}
        run_path.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    run = json.loads(run_path.read_text(encoding="utf-8"))
    if not scores.is_file():
        score_splits(merged_weights(run, work / "models" / f"v{run['model_version']}"), load_settings(config),
                     val, test, scores)
    scored = pd.read_parquet(scores)
    result = seed_result(scored[scored["split"] == "val"].reset_index(drop=True),
                         scored[scored["split"] == "test"].reset_index(drop=True))
    result["cli_f1"] = run["cli_f1"]
    result["rows_match_cli"] = all(abs(result["f1"]["none"][k] - v) < 1e-9 for k, v in run["cli_f1"].items())
    if run.get("cli_calibrated_f1"):  # the package's calibration is this bench's prior method
        result["prior_matches_cli"] = all(abs(result["f1"]["prior"][k] - v) < 1e-9 for k, v in run["cli_calibrated_f1"].items())
    result["train"] = run.get("train")
    return result


def kept_seeds(out: Path, config: str) -> dict[int, dict]:
    """The per-seed results already in ``out`` for the same config (scored on an earlier machine,
    whose saved scores are gone); empty when there is no such file."""
    if not out.is_file():
        return {}
    previous = json.loads(out.read_text(encoding="utf-8"))
    if previous.get("config") != config:
        return {}
    return {int(seed): result for seed, result in previous.get("per_seed", {}).items()}


def print_table(summary: Mapping, seeds: Mapping[int, Mapping]) -> None:
    languages = sorted(next(iter(seeds.values()))["f1"]["none"])
    print("\nmacro-F1 x 100 on the test split; change from calibration, mean over seeds")
    print(f"{'method':<8}" + "".join(f"{lang:>7}" for lang in languages) + f"{'mean':>8}  95% over seeds")
    for method in METHODS:
        s = summary[method]
        interval = f"[{s['ci_low']:+.2f}, {s['ci_high']:+.2f}]" if "ci_low" in s else "(one seed)"
        print(f"{method:<8}" + "".join(f"{s['per_language_change_points'][lang]:>+7.1f}" for lang in languages)
              + f"{s['mean_change_points']:>+8.2f}  {interval}")
    for seed, r in seeds.items():
        print(f"seed {seed}: none {100 * statistics.fmean(r['f1']['none'].values()):.1f}; "
              + "; ".join(f"{m} {v['delta']:+.2f} [{v['ci_low']:+.2f}, {v['ci_high']:+.2f}]" for m, v in r["vs_none_points"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123])
    parser.add_argument("--work", type=Path, default=REPO / ".sentibridge" / "calibration")
    parser.add_argument("--report", action="store_true", help="summarise the seeds scored so far; train nothing")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "calibration.json")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the config each seed trains with")
    parser.add_argument("--keep", action="store_true", help="summarise the seeds already in --out too (same config)")
    args = parser.parse_args()
    config = args.config.resolve()
    if not UMSAB.is_dir():
        print(f"skipped: UMSAB is not at {UMSAB}")
        return 0
    settings = load_settings(config)
    split = split_rows(validate_rows(read_dataset(UMSAB), settings.data).valid, settings.split, settings.data)
    val, test = split.val.reset_index(drop=True), split.test.reset_index(drop=True)
    args.work.mkdir(parents=True, exist_ok=True)
    config_name = str(config.relative_to(REPO))
    kept = kept_seeds(args.out, config_name) if args.keep else {}
    seeds = {seed: kept[seed] for seed in sorted(kept) if seed not in args.seeds}
    for seed in args.seeds:
        if args.report and not (args.work / f"scores_seed{seed}.parquet").is_file():
            continue
        result = score_seed(seed, args.work, val, test, config)
        if result is not None:
            seeds[seed] = result
    if not seeds:
        print("no seed has been scored yet")
        return 1
    summary = over_seeds(seeds)
    print_table(summary, seeds)
    write_result(args.out, {
        "units": "macro-F1 in 0..1 per language; changes in points (x100) of the unweighted mean over languages",
        "config": config_name,
        "methods": {"prior": prior_offsets.__doc__, "f1": f1_offsets.__doc__},
        "val_rows_per_language": val.groupby("language").size().to_dict(),
        "test_rows_per_language": test.groupby("language").size().to_dict(),
        "seeds": sorted(seeds),
        "complete": set(args.seeds) <= set(seeds),
        "summary": summary,
        "per_seed": {str(k): v for k, v in seeds.items()},
        **machine(),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
