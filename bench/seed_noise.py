"""Training-seed noise of a recipe: what ``gate.seed_std`` and ``gate.seed_std_mean`` should be.

A thin caller of ``sentibridge experiment``: one recipe (a config) trained with K seeds through
the real pipeline, every run on the same test rows. The experiment's report gives each
language's macro-F1 per seed and its spread; this writes the pooled values the gate takes:
``seed_std`` (one language) and ``seed_std_mean`` (the mean over languages).

    python -m bench.seed_noise                                  # configs/default.yaml on the sample, K=4 (about 15 min)
    python -m bench.seed_noise --config configs/umsab_cpu.yaml --seeds 3

Resumable: the runs live in ``--work`` (default ``experiments/seed_noise_<config>``).
Writes ``bench/results/seed_noise_<config>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.common import REPO, cpu_has_bf16, cpu_model
from sentibridge.experiment.driver import run_experiment
from sentibridge.experiment.plan import Plan, Recipe, check_plan, parse_seeds


def seed_noise_result(report: dict, config: Path, overrides: list[str]) -> dict:
    """The result file's fields from an experiment report of one recipe."""
    recipe = next(iter(report["recipes"].values()))
    per_language = {lang: cell["sd_points"] for lang, cell in recipe["per_language"].items() if lang != "mean"}
    runs = {r["seed"]: {"seconds": round(r["seconds"]), "f1_macro_avg": r["f1_macro_avg"],
                        "per_language": r["per_language"]} for r in report["runs"] if r["status"] == "ok"}
    return {"config": str(config), "overrides": overrides, "seeds": recipe["seeds"], "runs": runs,
            "per_language_std_points": {k: None if v is None else round(v, 2) for k, v in per_language.items()},
            "measured_seed_std": report.get("seed_noise"), "test_rows": report["test_rows"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "default.yaml")
    parser.add_argument("--seeds", default="4", help="runs (K): a count (seeds in sentibridge's order) or a list 42,7,123")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--work", type=Path, default=None, help="the experiment's folder (finished runs are reused)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if len(seeds) < 2:
        parser.error("--seeds: a spread needs at least two seeds")
    name = args.config.stem
    plan = Plan(f"seed_noise_{name}", (Recipe(name, args.config.resolve(), tuple(args.overrides)),), seeds)
    check_plan(plan)
    report = run_experiment(plan, args.work or REPO / "experiments" / plan.name, effect=1.0)
    spread = report.get("seed_noise")
    if spread:
        print(f"pooled: --set gate.seed_std={spread['per_language_points']} --set gate.seed_std_mean={spread['mean_points']}")
    out = args.out or REPO / "bench" / "results" / f"seed_noise_{name}.json"
    result = {**seed_noise_result(report, args.config, args.overrides), "cpu_model": cpu_model(),
              "cpu_native_bf16": cpu_has_bf16()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
