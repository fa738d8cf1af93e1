"""Averaging retrains on UMSAB: weight soups and score ensembles of whole-split models.

Retrains of one config differ only in their training seed, and each scores about 67-68 mean
macro-F1 on the whole split. Two ways to combine them, both compared on the same test rows:

* **soup**: the element-wise mean of the members' merged weights, one model of the same size
  and serving cost (a uniform "model soup", Wortsman et al. 2022);
* **ensemble**: the mean of the members' label probabilities, N models at serving time.

Members are the seeds ``bench/calibration.py`` trained through the real CLI (their runs, merged
weights and val/test scores under ``--work``), plus any merged-weight folder given with
``--extra NAME=FOLDER`` (scored here once). Every combination is calibrated as the CLI does it
(the package's ``prior`` offsets fitted on val) and compared with its best member by the paired
bootstrap over test rows: does averaging beat picking the best retrain?

    python -m bench.soup                    # the seeds under .sentibridge/calibration_full
    python -m bench.soup --extra ep2=.sentibridge/umsab_full_2ep/mlflow/artifacts/models/<id>/artifacts/artifacts/merged

Soups of every subset of two or more seeds are scored (about 4-5 min each on 2 cores; ``--sizes 3``
scores only the three-seed ones); ensembles of every subset of all members cost nothing more.
Scores are saved under ``--work`` and reused.
Writes ``bench/results/soup_full.json``. Exits 0 without writing anything when UMSAB is absent.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import REPO, UMSAB, machine, merged_weights, write_result
from bench.calibration import calibrated_predictions, mean_change, per_language_f1, score_splits
from sentibridge.config import Settings
from sentibridge.config_loading import load_settings
from sentibridge.data.ingest import read_dataset
from sentibridge.data.split import split_rows
from sentibridge.data.validation import validate_rows
from sentibridge.labels import SCORE_COLUMNS

CONFIG = REPO / "configs" / "umsab_full.yaml"
WEIGHTS = "model.safetensors"


def average_weights(folders: Sequence[Path], dst: Path) -> Path:
    """A soup: ``dst`` holds the first folder's files with every tensor the mean of the folders'
    (computed in float32, stored in the members' dtype). Members must share names and shapes."""
    from safetensors.torch import load_file, save_file

    states = [load_file(str(folder / WEIGHTS)) for folder in folders]
    names = set(states[0])
    for folder, state in zip(folders[1:], states[1:], strict=True):
        if set(state) != names or any(state[k].shape != states[0][k].shape for k in names):
            raise ValueError(f"{folder} does not have the same tensors as {folders[0]}: not a retrain of one model")
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folders[0], tmp)
    mean = {k: (sum(state[k].float() for state in states) / len(states)).to(states[0][k].dtype) for k in states[0]}
    save_file(mean, str(tmp / WEIGHTS), metadata={"format": "pt"})
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


def ensemble_scores(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The first frame with each label score the mean over ``frames`` (the same rows in the same order)."""
    first = frames[0]
    for frame in frames[1:]:
        if not np.array_equal(frame["id"].to_numpy(), first["id"].to_numpy()):
            raise ValueError("ensemble members were scored on different rows")
    out = first.copy()
    out[SCORE_COLUMNS] = sum(frame[SCORE_COLUMNS].to_numpy(dtype=np.float64) for frame in frames) / len(frames)
    out["pred"] = np.argmax(out[SCORE_COLUMNS].to_numpy(), axis=1)
    return out


def combinations(names: Sequence[str], smallest: int = 2) -> list[tuple[str, ...]]:
    """Every subset of ``names`` with at least ``smallest`` members, small ones first."""
    return [c for size in range(smallest, len(names) + 1) for c in itertools.combinations(names, size)]


def evaluated(scores: pd.DataFrame) -> dict:
    """Raw and calibrated (the package's ``prior``, fitted on val) test F1 per language, and the
    calibrated test predictions."""
    val = scores[scores["split"] == "val"].reset_index(drop=True)
    test = scores[scores["split"] == "test"].reset_index(drop=True)
    pred, _ = calibrated_predictions(val, test, "prior")
    raw = per_language_f1(test, np.argmax(test[SCORE_COLUMNS].to_numpy(), axis=1))
    prior = per_language_f1(test, pred)
    return {"raw": raw, "prior": prior, "raw_mean": statistics.fmean(raw.values()),
            "prior_mean": statistics.fmean(prior.values()), "test": test, "pred": pred}


def compared(combo: Mapping, members: Mapping[str, Mapping]) -> dict:
    """One combination against its members: the change from their mean, and the paired bootstrap
    against the best of them (calibrated F1, points)."""
    best = max(members, key=lambda name: members[name]["prior_mean"])
    return {
        "vs_members_mean_points": 100 * (combo["prior_mean"]
                                         - statistics.fmean(m["prior_mean"] for m in members.values())),
        "best_member": best,
        "vs_best_member_points": mean_change(combo["test"], members[best]["pred"], combo["pred"]),
    }


def score_folder(folder: Path, settings: Settings, val: pd.DataFrame, test: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Val and test scores of the merged weights in ``folder``, cached in ``out``."""
    if not out.is_file():
        score_splits(folder, settings, val, test, out)
    return pd.read_parquet(out)


def _summary_row(kind: str, result: Mapping, comparison: Mapping | None = None) -> dict:
    row = {"kind": kind, "raw_mean": result["raw_mean"], "prior_mean": result["prior_mean"],
           "prior_per_language": result["prior"], "raw_per_language": result["raw"]}
    return {**row, **(comparison or {})}


def print_table(rows: Mapping[str, Mapping]) -> None:
    languages = sorted(next(iter(rows.values()))["prior_per_language"])
    print("\nmacro-F1 x 100 on the whole test split, calibrated (prior) unless marked raw")
    print(f"{'model':<34}{'raw':>6}{'prior':>7}" + "".join(f"{lang:>6}" for lang in languages)
          + "  vs members' mean   vs best member [95%]")
    for name, r in rows.items():
        vs = r.get("vs_best_member_points")
        tail = "" if vs is None else (
            f"{r['vs_members_mean_points']:>+10.2f}        "
            f"{vs['delta']:+.2f} [{vs['ci_low']:+.2f}, {vs['ci_high']:+.2f}] ({r['best_member']})")
        print(f"{name:<34}{100 * r['raw_mean']:>6.1f}{100 * r['prior_mean']:>7.1f}"
              + "".join(f"{100 * r['prior_per_language'][lang]:>6.1f}" for lang in languages) + tail)


def _extra(spec: str) -> tuple[str, Path]:
    name, sep, folder = spec.partition("=")
    if not sep or not name or not (Path(folder) / WEIGHTS).is_file():
        raise argparse.ArgumentTypeError(f"--extra wants NAME=FOLDER with {WEIGHTS} in FOLDER, got {spec!r}")
    return name, Path(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / ".sentibridge" / "calibration_full",
                        help="bench/calibration.py's --work: run_seed*.json, scores_seed*.parquet, models/")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--extra", type=_extra, action="append", default=[], metavar="NAME=FOLDER",
                        help="another merged-weight folder of the same base model, as an ensemble member")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="score new soups only of these sizes (about 4-5 min each); soups scored before are shown")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soup_full.json")
    args = parser.parse_args()
    if not UMSAB.is_dir():
        print(f"skipped: UMSAB is not at {UMSAB}")
        return 0
    settings = load_settings(args.config.resolve())
    split = split_rows(validate_rows(read_dataset(UMSAB), settings.data).valid, settings.split, settings.data)
    val, test = split.val.reset_index(drop=True), split.test.reset_index(drop=True)
    folders: dict[str, Path] = {}
    scores: dict[str, pd.DataFrame] = {}
    for run_path in sorted(args.work.glob("run_seed*.json"), key=lambda p: int(p.stem.removeprefix("run_seed"))):
        seed = run_path.stem.removeprefix("run_seed")
        if not (args.work / f"scores_seed{seed}.parquet").is_file():
            continue  # still training or scoring in bench/calibration.py
        run = json.loads(run_path.read_text(encoding="utf-8"))
        folders[f"seed{seed}"] = merged_weights(run, args.work / "models" / f"v{run['model_version']}")
        scores[f"seed{seed}"] = pd.read_parquet(args.work / f"scores_seed{seed}.parquet")
    seeds = list(folders)
    if len(seeds) < 2:
        print(f"need at least two scored seeds under {args.work}, found {len(seeds)}: run bench/calibration.py first")
        return 1
    soup_dir = args.work / "soups"
    soup_dir.mkdir(parents=True, exist_ok=True)
    for name, folder in args.extra:
        folders[name] = folder
        scores[name] = score_folder(folder, settings, val, test, soup_dir / f"scores_{name}.parquet")
    results = {name: evaluated(frame) for name, frame in scores.items()}
    rows = {name: _summary_row("single", results[name]) for name in scores}
    seconds: dict[str, float] = {}
    for combo in combinations(seeds):
        name = "soup " + "+".join(combo)
        started = time.perf_counter()
        out = soup_dir / f"scores_soup_{'+'.join(combo)}.parquet"
        fresh = not out.is_file()
        if args.sizes and len(combo) not in args.sizes and fresh:
            continue
        if fresh:
            average_weights([folders[m] for m in combo], soup_dir / "+".join(combo))
        result = evaluated(score_folder(soup_dir / "+".join(combo), settings, val, test, out))
        if fresh:  # a soup scored in an earlier run costs nothing now: no time to report
            seconds[name] = time.perf_counter() - started
        rows[name] = {**_summary_row("soup", result, compared(result, {m: results[m] for m in combo})),
                      "members": list(combo)}
        print(f"{name}: {100 * result['prior_mean']:.2f} calibrated", flush=True)
    for combo in combinations(list(scores)):
        name = "ensemble " + "+".join(combo)
        result = evaluated(ensemble_scores([scores[m] for m in combo]))
        rows[name] = {**_summary_row("ensemble", result, compared(result, {m: results[m] for m in combo})),
                      "members": list(combo)}
    print_table(rows)
    singles = [rows[seed]["prior_mean"] for seed in seeds]
    write_result(args.out, {
        "units": "macro-F1 in 0..1 per language; changes in points (x100) of the unweighted mean over languages",
        "config": str(args.config.resolve().relative_to(REPO)),
        "calibration": "prior offsets fitted on each model's (or combination's) val scores, as the CLI does",
        "interval": "paired bootstrap over test rows within language, 95%, against the best member",
        "members": {name: str(folder) for name, folder in folders.items()},
        "seeds": seeds,
        "test_rows": len(test), "val_rows": len(val),
        "single_prior_mean": statistics.fmean(singles),
        "single_prior_range": [min(singles), max(singles)],
        "models": rows,
        "soup_seconds_this_run": seconds,
        **machine(),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
