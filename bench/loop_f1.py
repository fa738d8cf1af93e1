"""Does the faster training loop cost F1? The old loop's code against the new one's, over seeds.

Issue 26 changed what a training step computes: LoRA dropout 0 (was 0.05) and transformers'
``LengthGroupedSampler`` batch order. Each side is a git worktree of its own commit (``--old``,
``--new``), trained through its own real CLI on ``configs/umsab_cpu.yaml`` (300 train rows per
language, the whole test split) with each seed, in a home of its own. Every run's test predictions
are read back from its MLflow run (``evaluation/predictions.parquet``, the rows the gate compares).

Per language, and for the mean over languages, the difference new - old in macro-F1 points:

* ``t``: a t interval over the seeds of the per-seed differences (both loops use the same seed,
  so the pairs share the LoRA initialisation's seed, not its draws: the seed noise of both sides
  is in the spread);
* ``rows``: a paired bootstrap over the test rows of the seed-mean difference (the gate's
  ``bootstrap_deltas``, the same rows for every seed): the test set's noise alone.

A language passes when its ``t`` interval contains 0 or lies above it (does not lie wholly below 0). Training tokens/s of both
loops are reported side by side as a ratio (same machine, same run of this script).

    python -m bench.loop_f1 --old 11f18d1 --new HEAD          # 2 loops x 3 seeds: about 70 min on 2 cores
    python -m bench.loop_f1 --old 11f18d1 --new HEAD --report # summarise the finished runs only

Finished runs are kept under ``--work`` and skipped on a rerun, so an interrupted bench resumes.
Exits 0 without writing anything when UMSAB is absent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import REPO, UMSAB, cli_env, machine, write_result
from sentibridge.artifacts import PREDICTIONS
from sentibridge.statistics import bootstrap_deltas, macro_f1, t_interval

CONFIG = "configs/umsab_cpu.yaml"
SEEDS = (42, 7, 123)
CONFIDENCE = 0.95
RESAMPLES = 2000


def worktree(rev: str, work: Path, name: str) -> tuple[Path, str]:
    """A detached git worktree of ``rev`` at ``work/src-<name>`` (reused); returns (folder, full sha)."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()
    folder = work / f"src-{name}"
    if not (folder / ".git").exists():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(folder), sha], cwd=REPO, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, check=True, capture_output=True, text=True).stdout.strip()
    if head != sha:
        raise SystemExit(f"{folder} is at {head[:7]}, not {rev} ({sha[:7]}): remove it or pick another --work")
    return folder, sha


def train_once(source: Path, home: Path, seed: int) -> dict:
    """``sentibridge train --json`` from ``source``'s own code (``python -m`` puts it first on sys.path)."""
    env = {**cli_env(home), "PYTHONPATH": str(source)}
    cmd = [sys.executable, "-m", "sentibridge.cli", "train", "--config", CONFIG, "--json",
           "--set", f"data.path={UMSAB}", "--set", f"train.seed={seed}"]  # fmt: skip
    print(f"$ (cd {source}) {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=source, env=env, stdout=subprocess.PIPE, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"train in {source} (seed {seed}) failed with exit code {proc.returncode}")
    payload = json.loads(lines[-1])
    payload["wall_seconds"] = time.perf_counter() - started
    return payload


def predictions(payload: dict, dst: Path) -> pd.DataFrame:
    """The run's stored test predictions, downloaded once to ``dst``."""
    if not dst.is_file():
        import mlflow

        mlflow.set_tracking_uri(payload["tracking_uri"])
        path = mlflow.artifacts.download_artifacts(run_id=payload["mlflow_run_id"], artifact_path=PREDICTIONS)
        pd.read_parquet(path).to_parquet(dst, index=False)
    return pd.read_parquet(dst).sort_values("id").reset_index(drop=True)


def run_all(sides: dict[str, Path], seeds: list[int], work: Path, report_only: bool) -> dict[tuple[str, int], dict]:
    """Every (side, seed) run, finished ones read from ``work``; new ones trained unless ``report_only``."""
    runs = {}
    for seed in seeds:
        for side, source in sides.items():
            saved = work / f"{side}_seed{seed}.json"
            if not saved.is_file():
                if report_only:
                    continue
                payload = train_once(source, work / f"home-{side}", seed)
                predictions(payload, work / f"{side}_seed{seed}.parquet")
                saved.write_text(json.dumps(payload, indent=1), encoding="utf-8")
            runs[(side, seed)] = json.loads(saved.read_text(encoding="utf-8"))
            runs[(side, seed)]["rows"] = predictions(runs[(side, seed)], work / f"{side}_seed{seed}.parquet")
    return runs


def rows_match_cli(runs: dict[tuple[str, int], dict]) -> bool:
    """Whether every run's F1 recomputed from its stored predictions equals the CLI's own per-language F1."""
    for run in runs.values():
        for language, rows in run["rows"].groupby("language"):
            f1 = macro_f1(rows["label"].to_numpy(), rows["pred"].to_numpy())
            if abs(f1 - run["per_language"][language]["f1"]) > 1e-9:
                return False
    return True


def _holds(t: dict) -> bool | None:
    """The interval contains 0 or favours the new loop, i.e. it does not lie wholly below 0."""
    return None if t["high"] is None else bool(t["high"] >= 0)


def compare(runs: dict[tuple[str, int], dict], seeds: list[int]) -> dict:
    """Per language and for the mean: new - old in points, the t interval over seeds and the rows' bootstrap."""
    reference = runs[("old", seeds[0])]["rows"]
    for key, run in runs.items():
        if not run["rows"]["id"].equals(reference["id"]):
            raise SystemExit(f"{key} was scored on other test rows than {('old', seeds[0])}")
    languages = sorted(reference["language"].unique())
    y = reference["label"].to_numpy()
    language_of = reference["language"].to_numpy()
    # (seeds x rows): each side's resampled F1 is its mean over the seeds, as the gate compares recipes.
    new, old = (np.stack([runs[(side, seed)]["rows"]["pred"].to_numpy() for seed in seeds]) for side in ("new", "old"))
    masks = {language: language_of == language for language in languages}
    boots = bootstrap_deltas({lang: (y[mask], new[:, mask], old[:, mask]) for lang, mask in masks.items()}, RESAMPLES, 0)
    out: dict = {}
    per_seed_mean = {s: 0.0 for s in seeds}
    for language, mask in masks.items():
        per_seed = {seed: 100 * (macro_f1(y[mask], new[k, mask]) - macro_f1(y[mask], old[k, mask]))
                    for k, seed in enumerate(seeds)}
        for seed, change in per_seed.items():
            per_seed_mean[seed] += change / len(languages)
        t = t_interval(list(per_seed.values()), CONFIDENCE)
        out[language] = {"per_seed_points": per_seed, "t": t, "rows": _quantiles(boots[language]), "holds": _holds(t)}
    t = t_interval(list(per_seed_mean.values()), CONFIDENCE)
    boot_mean = np.mean(list(boots.values()), axis=0)
    out["mean"] = {"per_seed_points": per_seed_mean, "t": t, "rows": _quantiles(boot_mean), "holds": _holds(t)}
    return out


def _quantiles(deltas: np.ndarray) -> dict[str, float]:
    """The two-sided interval at CONFIDENCE of resampled differences."""
    low, high = np.quantile(deltas, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return {"low": float(low), "high": float(high)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="git revision of the old loop")
    parser.add_argument("--new", default="HEAD", help="git revision of the new loop")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--work", type=Path, default=REPO / ".sentibridge" / "loop_f1")
    parser.add_argument("--report", action="store_true", help="summarise the finished runs; train nothing")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "loop_f1.json")
    args = parser.parse_args()
    if not UMSAB.is_dir():
        print(f"skipped: UMSAB is not at {UMSAB}")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    (old_src, old_sha), (new_src, new_sha) = worktree(args.old, args.work, "old"), worktree(args.new, args.work, "new")
    runs = run_all({"old": old_src, "new": new_src}, args.seeds, args.work, args.report)
    seeds = [s for s in args.seeds if ("old", s) in runs and ("new", s) in runs]
    if not seeds:
        print("no seed has finished on both loops yet")
        return 0
    result = compare(runs, seeds)
    speed = {side: statistics.fmean(runs[(side, s)]["train"]["tokens_per_s"] for s in seeds) for side in ("old", "new")}
    print(f"\nnew ({new_sha[:7]}) - old ({old_sha[:7]}), macro-F1 points, {len(seeds)} seeds {seeds}")
    print("| language | per seed | mean | t 95% | rows 95% | holds |")
    print("|---|---|---:|---|---|---|")
    for language, row in result.items():
        t, rows = row["t"], row["rows"]
        seeds_text = " ".join(f"{v:+.1f}" for v in row["per_seed_points"].values())
        t_text = "" if t["low"] is None else f"[{t['low']:+.1f}, {t['high']:+.1f}]"
        print(f"| {language} | {seeds_text} | {t['mean']:+.2f} | {t_text} | [{rows['low']:+.1f}, {rows['high']:+.1f}] | {row['holds']} |")
    print(f"\ntraining tokens/s: old {speed['old']:.0f}, new {speed['new']:.0f}, ratio {speed['new'] / speed['old']:.2f}x")
    write_result(args.out, {
        "units": "macro-F1 differences new - old in points (x100); t: interval over seeds; rows: paired bootstrap of test rows",
        "old": old_sha, "new": new_sha, "config": CONFIG, "seeds": seeds, "complete": seeds == list(args.seeds),
        "confidence": CONFIDENCE,
        "per_language": {k: v for k, v in result.items() if k != "mean"},
        "mean": result["mean"],
        "all_hold": all(v["holds"] is True for v in result.values()),
        "rows_match_cli": rows_match_cli({k: v for k, v in runs.items() if k[1] in seeds}),
        "f1": {side: {str(s): runs[(side, s)]["per_language"] for s in seeds} for side in ("old", "new")},
        "f1_macro_avg": {side: {str(s): runs[(side, s)]["f1_macro_avg"] for s in seeds} for side in ("old", "new")},
        "train_tokens_per_s": speed,
        "train_speedup": speed["new"] / speed["old"],
        "train_seconds": {side: {str(s): runs[(side, s)]["train"]["train_seconds"] for s in seeds} for side in ("old", "new")},
        "quick": False,
        **machine(),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
