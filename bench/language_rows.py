"""One language's own train rows against its F1 on UMSAB: does it gain from more of them?

On the whole train split, Hindi scored 47.2 (``umsab_full.json``), below 55.0 with 300 rows per
language (``umsab.json``) and 54.4 with no Hindi rows at all (``transfer.json``). This bench
isolates Hindi's own rows: ``configs/umsab_cpu.yaml`` (300 train rows for every other language)
is trained through the real CLI with the language's train rows capped at each count in ``--rows``
(``data.max_rows_by_language``; ``0``: none, its val rows kept; ``all``: its whole train split),
for each seed, and scored on every language's whole test split.

    python -m bench.language_rows                              # hi at 300 and all rows, seed 42
    python -m bench.language_rows --language hi --rows 0 300 all --seeds 42 7
    python -m bench.language_rows --rows all --baseline bench/results/calibration.json

``--baseline`` takes the 300-row runs of the same seeds from ``bench/calibration.py``'s result
(the same config, rows and CLI evaluation) instead of training them again.

Each (rows, seed) run is saved under ``--work`` when it finishes and skipped when the command is
run again. Writes ``bench/results/language_rows.json``. Exits 0 without writing anything when
UMSAB is absent.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.common import REPO, UMSAB, bench_rows, machine, run_cli, write_result
from sentibridge.config_loading import load_settings
from sentibridge.errors import SentibridgeError

CONFIG = REPO / "configs" / "umsab_cpu.yaml"


def row_overrides(language: str, count: str) -> list[str]:
    """The ``--set`` that gives ``language`` ``count`` train rows (``all``: every one) and leaves the rest as configured."""
    return [f"data.max_rows_by_language.{language}={'null' if count == 'all' else int(count)}"]


def summary(runs: dict[str, dict[int, dict[str, float]]], language: str) -> dict:
    """Per row count: the language's F1 and the other languages' mean, averaged over seeds (points)."""
    out = {}
    for count, seeds in runs.items():
        own = [100 * f1[language] for f1 in seeds.values()]
        others = [100 * statistics.fmean(v for k, v in f1.items() if k != language) for f1 in seeds.values()]
        out[count] = {
            "seeds": sorted(seeds),
            "language_f1": statistics.fmean(own),
            "language_f1_sd": statistics.stdev(own) if len(own) > 1 else None,
            "others_mean_f1": statistics.fmean(others),
            "mean_f1": statistics.fmean(100 * statistics.fmean(f1.values()) for f1 in seeds.values()),
        }
    return out


def baseline_runs(path: Path, seeds: list[int]) -> dict[int, dict[str, float]]:
    """Per-language F1 of the ``bench/calibration.py`` runs of ``seeds`` (those it has), as the CLI evaluated them."""
    result = json.loads(path.read_text(encoding="utf-8"))
    if result.get("config") != str(CONFIG.relative_to(REPO)):
        raise SystemExit(f"{path} was measured with {result.get('config')}, not {CONFIG.relative_to(REPO)}")
    return {seed: result["per_seed"][str(seed)]["cli_f1"] for seed in seeds if str(seed) in result["per_seed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="hi")
    parser.add_argument("--rows", nargs="+", default=["300", "all"], help="train row counts of --language; 'all' for its whole split")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--baseline", type=Path, help="calibration.json: its uncalibrated runs are the capped-row count")
    parser.add_argument("--work", type=Path, default=REPO / ".sentibridge" / "language_rows")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "language_rows.json")
    args = parser.parse_args()
    if not UMSAB.is_dir():
        print(f"skipped: UMSAB is not at {UMSAB}")
        return 0
    bad = [r for r in args.rows if r != "all" and not r.isdigit()]
    if bad:
        parser.error(f"--rows takes counts or 'all', got {' '.join(bad)}")
    settings = load_settings(CONFIG)
    runs: dict[str, dict[int, dict[str, float]]] = {}
    train_rows: dict[str, int] = {}
    for count in args.rows:
        folder = args.work / args.language / count
        try:
            train, _ = bench_rows(load_settings(CONFIG, row_overrides(args.language, count)))
        except SentibridgeError as exc:  # a language UMSAB lacks
            parser.error(str(exc))
        train_rows[count] = int((train["language"] == args.language).sum())
        folder.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            done = folder / f"seed{seed}.json"
            if not done.is_file():
                print(f"\n=== {args.language}: {train_rows[count]} train rows, seed {seed} ===", flush=True)
                # Raw scores: the --baseline runs' F1 (calibration.json's cli_f1) is uncalibrated too.
                overrides = [*row_overrides(args.language, count), f"train.seed={seed}", "eval.calibration=none"]
                code, payload, seconds = run_cli(CONFIG, overrides, folder / "home")
                if code != 0 or not payload or not payload.get("ok"):
                    print(f"{count} rows, seed {seed} failed (exit {code})")
                    return 1
                done.write_text(json.dumps({"f1": {k: v["f1"] for k, v in payload["per_language"].items()},
                                            "support": {k: v["support"] for k, v in payload["per_language"].items()},
                                            "train": payload.get("train"), "wall_seconds": seconds}, indent=2) + "\n")
            runs.setdefault(count, {})[seed] = json.loads(done.read_text())["f1"]
    if args.baseline:
        count = str(settings.data.max_rows_per_language)
        reused = baseline_runs(args.baseline, args.seeds)
        if count in runs or not reused:
            parser.error(f"--baseline gives the {count}-row runs: drop {count} from --rows, and score those seeds first")
        runs = {count: reused, **runs}
        train_rows[count] = settings.data.max_rows_per_language
    table = summary(runs, args.language)
    print(f"\nmacro-F1 x 100 on the whole test split; {args.language}'s train rows varied, the others at "
          f"{settings.data.max_rows_per_language}")
    print(f"{'rows':>6} {args.language:>7} {'sd':>5} {'others':>7} {'mean':>6}  seeds")
    for count, r in table.items():
        sd = "—" if r["language_f1_sd"] is None else f"{r['language_f1_sd']:.1f}"
        print(f"{train_rows[count]:>6} {r['language_f1']:>7.1f} {sd:>5} {r['others_mean_f1']:>7.1f} {r['mean_f1']:>6.1f}  {r['seeds']}")
    write_result(args.out, {
        "units": "macro-F1 x 100 on each language's whole test split, means over seeds",
        "config": str(CONFIG.relative_to(REPO)),
        "language": args.language,
        "train_rows": train_rows,
        "seeds": args.seeds,
        "baseline": str(args.baseline) if args.baseline else None,
        "results": table,
        "per_seed": {count: {str(s): f1 for s, f1 in seeds.items()} for count, seeds in runs.items()},
        **machine(),
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
