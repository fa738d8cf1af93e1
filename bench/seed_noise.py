"""Training-seed noise of a recipe: what ``gate.seed_std`` and ``gate.seed_std_mean`` should be.

Trains one config K times through the real CLI (``sentibridge train --json``), changing nothing
but ``train.seed``, in one home, so every run scores the same test rows. Prints each language's
macro-F1 per seed and its standard deviation over seeds (points), and the pooled values the
gate takes: ``seed_std`` (one language) and ``seed_std_mean`` (the mean over languages).

    python bench/seed_noise.py                                  # configs/default.yaml on the sample, K=4 (about 15 min)
    python bench/seed_noise.py --config configs/umsab_cpu.yaml --seeds 3

Writes ``bench/results/seed_noise_<config>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from bench.umsab import cpu_has_bf16, cpu_model, run_cli  # noqa: E402

#: Seeds tried in order; 42 is the config default, 7 the issue's retrain.
SEEDS = (42, 7, 1, 2, 3, 4, 5, 6)


def seed_spread(groups: Sequence[Sequence[dict[str, float]]]) -> dict | None:
    """Pooled seed noise in points from groups of runs (each a language -> F1 in 0..1 map, one group per config).

    Each group is centred on its own mean, so configs of different quality pool fairly.
    ``per_language_points`` is the root of the mean per-language variance; ``mean_points`` the
    spread of the language mean. None without a group of two runs or more.
    """
    language_var, mean_var, dof = 0.0, 0.0, 0
    for runs in groups:
        if len(runs) < 2:
            continue
        frame = 100 * pd.DataFrame(list(runs))
        language_var += float(frame.var(ddof=1).mean()) * (len(runs) - 1)
        mean_var += float(frame.mean(axis=1).var(ddof=1)) * (len(runs) - 1)
        dof += len(runs) - 1
    if not dof:
        return None
    return {"per_language_points": round((language_var / dof) ** 0.5, 2), "mean_points": round((mean_var / dof) ** 0.5, 2),
            "degrees_of_freedom": dof}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "default.yaml")
    parser.add_argument("--seeds", type=int, default=4, help=f"runs (K), seeds taken in order from {SEEDS}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 2 <= args.seeds <= len(SEEDS):
        parser.error(f"--seeds must be 2..{len(SEEDS)}")
    seeds = SEEDS[: args.seeds]
    runs: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="seed_noise_") as tmp:
        for seed in seeds:
            code, payload, seconds = run_cli(args.config.resolve(), [*args.overrides, f"train.seed={seed}"], Path(tmp) / "home")
            if code != 0 or not payload or not payload.get("ok"):
                raise SystemExit(f"train with train.seed={seed} failed (exit {code})")
            runs[seed] = {"seconds": round(seconds), "f1_macro_avg": payload["f1_macro_avg"],
                          "per_language": {lang: v["f1"] for lang, v in payload["per_language"].items()},
                          "test_rows": {lang: v.get("support") for lang, v in payload["per_language"].items()}}
    frame = 100 * pd.DataFrame({seed: run["per_language"] for seed, run in runs.items()})
    spread = seed_spread([[run["per_language"] for run in runs.values()]])
    print("\n| language | " + " | ".join(f"seed {s}" for s in seeds) + " | std (points) |")
    print("|---|" + "---|" * (len(seeds) + 1))
    for language, row in frame.iterrows():
        print(f"| {language} | " + " | ".join(f"{v:.1f}" for v in row) + f" | {row.std(ddof=1):.1f} |")
    means = frame.mean()
    print("| mean | " + " | ".join(f"{v:.1f}" for v in means) + f" | {means.std(ddof=1):.1f} |")
    print(f"pooled: --set gate.seed_std={spread['per_language_points']} --set gate.seed_std_mean={spread['mean_points']}")
    name = args.config.stem
    out = args.out or REPO / "bench" / "results" / f"seed_noise_{name}.json"
    result = {"config": str(args.config), "overrides": args.overrides, "seeds": list(seeds), "runs": runs,
              "per_language_std_points": frame.std(axis=1, ddof=1).round(2).to_dict(),
              "measured_seed_std": spread, "cpu_model": cpu_model(), "cpu_native_bf16": cpu_has_bf16()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
