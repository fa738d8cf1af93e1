"""Ablation on UMSAB with simulated low resource, over several training seeds: does augmentation
close the gap between low- and high-resource languages?

Hindi and Arabic keep 5% of their train rows (92 each); the other six languages keep 300, the
subset size of ``configs/umsab_cpu.yaml``. The rest of the Hindi and Arabic train rows, without
labels, are the unlabelled pool for self-alignment (never val or test text). Every variant is
trained with each training seed through the real CLI, in one home, and evaluated on the whole
test split of every language (870 rows each):

* ``none``: no augmentation;
* ``retrieval_minilm``: retrieval augmentation with all-MiniLM-L6-v2;
* ``retrieval_e5``: the same with multilingual-e5-small;
* ``retrieval_self``: ``retrieval_minilm`` plus self-alignment, the pool labelled by one
  ``none`` model (the previous round's fine-tuned model, of ``--labeler-seed``) and kept where
  the kNN vote agrees. One labeler for every seed keeps the seed spread to training alone;
* ``retrieval_demos``: ``retrieval_minilm`` plus two retrieval demonstrations per prompt.

Per variant: per-language mean F1 over seeds, the low/high gap, ``gap_closed`` (the fraction of
``none``'s gap it closes) and the high-resource change, each with a 95% interval. The intervals
are t intervals over seeds with the seed spread pooled over all variants (the seeds differ only
in LoRA initialisation, dropout and batch order, so their spread is assumed to be shared); test
rows are the same for every run, so their sampling noise is common to all variants. The JSON also
gives the smallest effect the design detects with 80% power (``detectable_effect_points``).

Every (variant, seed) run is saved under ``--work`` as it finishes; rerunning the same command
skips those, so an interrupted bench resumes.

    python -m bench.ablation                     # 5 variants x 3 seeds: about 3 hours on 2 cores
    python -m bench.ablation --seeds 42 7 123 5  # more seeds, more power
    python -m bench.ablation --quick             # 80 train / 80 test rows per language, 2 seeds
    python -m bench.ablation --report --out x.json  # summarise the runs saved so far, train nothing

Writes ``bench/results/ablation.json`` (``ablation_quick.json``). Exits 0 without writing
anything when UMSAB is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from scipy import stats

from bench.common import REPO, UMSAB, machine, mean, merged_weights, run_cli, write_result
from sentibridge.augment.embedding import embed_texts, load_embedder
from sentibridge.augment.retrieval import build_index
from sentibridge.config import EMBEDDED_EMBEDDER, EMBEDDED_MULTILINGUAL_EMBEDDER, Settings
from sentibridge.config_loading import load_settings
from sentibridge.data.ingest import read_dataset
from sentibridge.data.split import split_rows, subsample_per_language
from sentibridge.statistics import difference_interval, pooled_sd

LOW = ("hi", "ar")
LOW_FRACTION = 0.05
CONFIG = REPO / "configs" / "umsab_cpu.yaml"
DEFAULT_CONFIG = REPO / "configs" / "default.yaml"
SEEDS = (42, 7, 123)
REFERENCE = "none"
#: Variant -> its ``--set`` overrides (``retrieval_self`` also gets the pool and its labeler).
VARIANTS: dict[str, tuple[str, ...]] = {
    "none": ("augment.enabled=false",),
    "retrieval_minilm": ("augment.enabled=true", f"embedding.model={EMBEDDED_EMBEDDER}"),
    "retrieval_e5": ("augment.enabled=true", f"embedding.model={EMBEDDED_MULTILINGUAL_EMBEDDER}"),
    "retrieval_self": (
        "augment.enabled=true", f"embedding.model={EMBEDDED_EMBEDDER}", "augment.self_alignment.enabled=true",
    ),
    # Two examples of about 40 tokens each need room next to the prompt.
    "retrieval_demos": (
        "augment.enabled=true", f"embedding.model={EMBEDDED_EMBEDDER}", "demonstrations.k=2", "model.max_length=384",
    ),
}
GOAL_GAP_CLOSED = 0.30
GOAL_MAX_HIGH_DROP = 0.01
CONFIDENCE = 0.95
POWER = 0.80


def simulated_dataset(rows: pd.DataFrame, high_rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dataset with explicit splits, unlabelled pool) from the prepared UMSAB splits.

    Train: ``high_rows`` per language, except LOW languages at 5% of their full train split.
    Val and test are kept whole. The pool is the LOW languages' other train rows, text only.
    """
    split = split_rows(rows, load_settings(CONFIG).split)
    train = split.train
    high = subsample_per_language(train[~train["language"].isin(LOW)], high_rows, seed)
    low_parts, pool_parts = [], []
    for lang in LOW:
        rows_lang = train[train["language"] == lang].sample(frac=1.0, random_state=seed)
        keep = max(3, round(LOW_FRACTION * len(rows_lang)))
        low_parts.append(rows_lang.head(keep))
        pool_parts.append(rows_lang.iloc[keep:])
    columns = ["id", "text", "label", "language", "split"]
    data = pd.concat([high, *low_parts, split.val, split.test], ignore_index=True)[columns]
    pool = pd.concat(pool_parts, ignore_index=True)[["text", "language"]]
    return data, pool


def default_variant(settings: Settings) -> str:
    """The variant that the shipped default configuration runs."""
    augment = settings.augment
    if not augment.enabled:
        return "none"
    if settings.demonstrations.k > 0:
        return "retrieval_demos"
    if augment.self_alignment.enabled:
        return "retrieval_self"
    return "retrieval_e5" if settings.embedding.model == EMBEDDED_MULTILINGUAL_EMBEDDER else "retrieval_minilm"


# --- statistics (pure; unit-tested) --------------------------------------------------------


def gap_summary(per_language: Mapping[str, float]) -> dict[str, float]:
    """Low-resource mean, high-resource mean and their gap (0..1 F1 units) of one run."""
    low = mean(per_language[lang] for lang in LOW)
    high = mean(v for lang, v in per_language.items() if lang not in LOW)
    return {"low_mean": low, "high_mean": high, "gap": high - low}


def _pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Pooled standard deviation over groups and its degrees of freedom (NaN without a spread)."""
    sd, df = pooled_sd(groups)
    return (float("nan") if sd is None else sd), df


def _difference(ref: Sequence[float], other: Sequence[float], sd: float, df: int) -> dict[str, float]:
    """mean(other) - mean(ref) with its t interval at CONFIDENCE (pooled ``sd``, ``df``)."""
    if not df or math.isnan(sd):
        return {"mean": statistics.fmean(other) - statistics.fmean(ref), "ci_low": float("nan"), "ci_high": float("nan")}
    difference = difference_interval(ref, other, sd, df, CONFIDENCE)
    return {"mean": difference["mean"], "ci_low": difference["low"], "ci_high": difference["high"]}


def detectable_effect(sd: float, df: int, seeds: int) -> float:
    """Smallest difference of two variants' means (K seeds each) found with POWER at CONFIDENCE."""
    if not df or math.isnan(sd):
        return float("nan")
    return (stats.t.ppf(0.5 + CONFIDENCE / 2, df) + stats.t.ppf(POWER, df)) * sd * math.sqrt(2 / seeds)


def ablation_summary(runs: Mapping[str, Mapping[int, Mapping[str, float]]], default: str) -> dict:
    """Per-variant means over seeds, gap closed and high-resource change against ``none``, with intervals.

    ``runs``: variant -> seed -> language -> macro-F1 (0..1). ``gap_closed`` is
    ``(gap_none - gap_variant) / gap_none`` of the seed means; its interval is the interval of
    the numerator divided by ``gap_none`` (the reference gap taken as known). The top-level
    ``gap_closed`` and ``high_resource_drop`` are the ``default`` variant's means.
    """
    seeds = {name: sorted(by_seed) for name, by_seed in runs.items()}
    gaps = {name: {s: gap_summary(runs[name][s]) for s in seeds[name]} for name in runs}
    series = {
        key: {name: [gaps[name][s][key] for s in seeds[name]] for name in runs}
        for key in ("gap", "high_mean", "low_mean")
    }
    sd = {key: _pooled_sd(list(series[key].values())) for key in series}
    ref_gap = sum(series["gap"][REFERENCE]) / len(series["gap"][REFERENCE])
    languages = sorted(next(iter(runs[REFERENCE].values())))
    variants: dict[str, dict] = {}
    for name in runs:
        entry = {
            "seeds": seeds[name],
            "per_language_mean": {lang: mean(runs[name][s][lang] for s in seeds[name]) for lang in languages},
            "per_language_sd": {
                lang: _sd([runs[name][s][lang] for s in seeds[name]]) for lang in languages
            },
            **{f"{key}_mean": sum(series[key][name]) / len(series[key][name]) for key in series},
            "per_seed": gaps[name],
        }
        if name != REFERENCE:
            narrowing = _difference(series["gap"][name], series["gap"][REFERENCE], *sd["gap"])
            high = _difference(series["high_mean"][REFERENCE], series["high_mean"][name], *sd["high_mean"])
            low = _difference(series["low_mean"][REFERENCE], series["low_mean"][name], *sd["low_mean"])
            scale = ref_gap if ref_gap > 0 else float("nan")
            entry["gap_closed"] = {k: v / scale for k, v in narrowing.items()}
            entry["gap_narrowing"] = narrowing
            entry["high_resource_change"] = high
            entry["low_resource_change"] = low
            entry["meets_goal"] = bool(
                entry["gap_closed"]["mean"] >= GOAL_GAP_CLOSED
                and entry["gap_closed"]["ci_low"] > 0
                and -high["mean"] <= GOAL_MAX_HIGH_DROP
            )
        variants[name] = entry
    k = min(len(s) for s in seeds.values())
    if default == REFERENCE:
        # Augmentation off is the default: report the best variant, as the issue asks.
        candidates = [n for n in variants if n != REFERENCE]
        chosen = max(candidates, key=lambda n: variants[n]["gap_closed"]["mean"]) if candidates else REFERENCE
    else:
        chosen = default
    picked = variants.get(chosen, {})
    gap_closed = picked.get("gap_closed", {}).get("mean", 0.0)
    high_drop = max(0.0, -picked.get("high_resource_change", {}).get("mean", 0.0))
    return {
        "variants": variants,
        "reference": REFERENCE,
        "default_variant": default,
        "reported_variant": chosen,
        "gap_closed": gap_closed,
        "gap_closed_interval": [picked.get("gap_closed", {}).get("ci_low"), picked.get("gap_closed", {}).get("ci_high")],
        "high_resource_drop": high_drop,
        "high_resource_change_interval": [
            picked.get("high_resource_change", {}).get("ci_low"), picked.get("high_resource_change", {}).get("ci_high"),
        ],
        "seed_sd": {key: {"sd": v[0], "df": v[1]} for key, v in sd.items()},
        "detectable_effect_points": {
            key: 100 * detectable_effect(sd[key][0], sd[key][1], k) for key in sd
        },
        "confidence": CONFIDENCE,
        "power": POWER,
        "goal": {
            "gap_closed_at_least": GOAL_GAP_CLOSED,
            "interval_above_zero": True,
            "high_resource_drop_at_most": GOAL_MAX_HIGH_DROP,
            "met": bool(variants.get(chosen, {}).get("meets_goal", False)),
            "met_by": sorted(n for n, v in variants.items() if v.get("meets_goal")),
        },
    }


def _sd(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


# --- running ---------------------------------------------------------------------------------


def embedding_speed(texts: list[str], embedder: str, batch_size: int, precision: str) -> dict:
    """Embed and index ``texts`` with a cold cache, then again with the cache warm."""
    model = load_embedder(embedder)
    with tempfile.TemporaryDirectory(prefix="sentibridge-embcache-") as cache:
        t0 = time.perf_counter()
        vectors = embed_texts(texts, embedder, Path(cache), batch_size, progress=False, model=model, precision=precision)
        t1 = time.perf_counter()
        build_index(vectors, [str(i) for i in range(len(texts))])
        t2 = time.perf_counter()
        embed_texts(texts, embedder, Path(cache), batch_size, progress=False, model=model, precision=precision)
        t3 = time.perf_counter()
    return {
        "texts": len(texts),
        "embed_seconds_cold": t1 - t0,
        "index_seconds": t2 - t1,
        "texts_per_s": len(texts) / (t1 - t0),
        "embed_seconds_cached": t3 - t2,
        "cache_speedup": (t1 - t0) / (t3 - t2),
        "target_seconds": 120,
    }


def saved_run(runs_dir: Path, name: str, seed: int) -> dict | None:
    """The saved result of one (variant, seed), or None when it has not finished."""
    path = runs_dir / f"{name}_seed{seed}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def labeler_path(home: Path, runs_dir: Path, seed: int) -> Path | None:
    """The merged ``none`` model of ``seed`` that labels the pool, or None (with the reason printed)."""
    run = saved_run(runs_dir, REFERENCE, seed)
    if run is None:
        print(f"the labeler ({REFERENCE}, seed {seed}) has not been trained yet")
        return None
    uri = run["tracking_uri"]
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # Saved runs outlive the home (they are committed); the weights do not.
        print(f"the labeler ({REFERENCE}, seed {seed}) was trained in a home that no longer exists: "
              f"delete {runs_dir / f'{REFERENCE}_seed{seed}.json'} to retrain it, or pass another --labeler-seed")
        return None
    return merged_weights(run, home.parent / "labelers" / f"v{run['model_version']}")


def run_variant(
    name: str, seed: int, common: list[str], work: Path, runs_dir: Path, labeler_seed: int
) -> dict | None:
    """Train and evaluate one (variant, seed) through the CLI, or load it when already saved."""
    saved = saved_run(runs_dir, name, seed)
    if saved is not None:
        return saved
    path = runs_dir / f"{name}_seed{seed}.json"
    home = work / "home"
    extra = [*VARIANTS[name], f"train.seed={seed}"]
    if name == "retrieval_self":
        labeler = labeler_path(home, runs_dir, labeler_seed)
        if labeler is None:
            return None
        extra += [f"augment.self_alignment.pool_path={work / 'pool.jsonl'}",
                  f"augment.self_alignment.labeler={labeler}"]
    print(f"\n=== {name}, train.seed={seed} ===", flush=True)
    code, payload, seconds = run_cli(CONFIG, common + extra, home)
    if code != 0 or payload is None or not payload.get("ok"):
        print(f"variant {name} seed {seed} failed (exit {code})", flush=True)
        return None
    run = {
        "variant": name,
        "seed": seed,
        "overrides": common + extra,
        "f1": {lang: v["f1"] for lang, v in payload["per_language"].items()},
        "support": {lang: v["support"] for lang, v in payload["per_language"].items()},
        "augmentation": payload.get("augmentation"),
        "labeler_seed": labeler_seed if name == "retrieval_self" else None,
        "train": payload.get("train"),
        "wall_seconds": seconds,
        **{k: payload.get(k) for k in ("tracking_uri", "registered_model", "model_version")},
    }
    runs_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return run


def print_table(summary: dict, variants: Sequence[str]) -> None:
    v = summary["variants"]
    langs = sorted(v[REFERENCE]["per_language_mean"])
    print("\nmacro-F1 x 100, mean over seeds (seed sd)")
    print("| language | " + " | ".join(variants) + " |")
    print("|---|" + "---:|" * len(variants))
    for lang in langs:
        tag = " (low)" if lang in LOW else ""
        cells = [f"{100 * v[n]['per_language_mean'][lang]:.1f} ({100 * v[n]['per_language_sd'][lang]:.1f})" for n in variants]
        print(f"| {lang}{tag} | " + " | ".join(cells) + " |")
    for key in ("low_mean_mean", "high_mean_mean", "gap_mean"):
        print(f"| {key.removesuffix('_mean')} | " + " | ".join(f"{100 * v[n][key]:.1f}" for n in variants) + " |")

    def interval(d: dict, scale: float, unit: str) -> str:
        return f"{scale * d['mean']:+.1f}{unit} [{scale * d['ci_low']:+.1f}, {scale * d['ci_high']:+.1f}]"

    print("| gap closed (95% interval) | — | " + " | ".join(interval(v[n]["gap_closed"], 100, "%") for n in variants[1:]) + " |")
    print("| high-resource change, points | — | "
          + " | ".join(interval(v[n]["high_resource_change"], 100, "") for n in variants[1:]) + " |")
    d = summary["detectable_effect_points"]
    print(f"\nseeds: {summary['seeds']}; pooled seed sd of the gap {100 * summary['seed_sd']['gap']['sd']:.1f} points "
          f"(df {summary['seed_sd']['gap']['df']}); detectable with 80% power: gap {d['gap']:.1f}, "
          f"high-resource mean {d['high_mean']:.1f} points")
    print(f"default variant: {summary['default_variant']}; reported: {summary['reported_variant']}: gap closed "
          f"{summary['gap_closed']:.1%} (goal >= 30%, interval above 0), high-resource drop "
          f"{100 * summary['high_resource_drop']:.1f} points (goal <= 1): {'met' if summary['goal']['met'] else 'not met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="80 train / 80 test rows per language, seeds 42 and 7")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"training seeds (default {' '.join(map(str, SEEDS))})")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="variants to run ('none' is always run)")
    parser.add_argument("--skip-speed", action="store_true", help="skip the embedding speed measurement")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every run (a separate work folder)")
    parser.add_argument("--work", type=Path, default=REPO / ".sentibridge" / "ablation",
                        help="data, home and finished runs; rerun with the same folder to resume")
    parser.add_argument("--report", action="store_true",
                        help="summarise the saved runs, each variant over the seeds it has finished; train nothing")
    parser.add_argument("--labeler-seed", type=int, default=None,
                        help="seed of the 'none' model that labels the self-alignment pool (default the first seed)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    seeds = args.seeds or ([42, 7] if args.quick else list(SEEDS))
    labeler_seed = seeds[0] if args.labeler_seed is None else args.labeler_seed
    variants = [REFERENCE, *[v for v in VARIANTS if v in args.variants and v != REFERENCE]]
    if not UMSAB.is_dir():
        print(f"UMSAB not found at {UMSAB}: nothing to measure")
        return 0
    out = args.out or REPO / "bench" / "results" / f"ablation{'_quick' if args.quick else ''}.json"
    settings = load_settings(CONFIG)
    high_rows = 80 if args.quick else settings.data.max_rows_per_language
    eval_rows = 80 if args.quick else None
    started = time.perf_counter()
    rows = read_dataset(UMSAB)

    speed = None
    if not (args.skip_speed or args.report):  # a report trains and measures nothing
        train_texts = split_rows(rows, settings.split).train["text"].tolist()
        speed = embedding_speed(
            train_texts, settings.embedding.model, settings.embedding.batch_size, settings.embedding.precision
        )
        print(f"embedding {speed['texts']} train texts: {speed['embed_seconds_cold']:.1f} s cold, "
              f"index {speed['index_seconds']:.2f} s, {speed['embed_seconds_cached']:.1f} s cached", flush=True)

    data, pool = simulated_dataset(rows, high_rows, settings.split.seed)
    design = hashlib.sha256(data.to_json(orient="records").encode()).hexdigest()[:12]
    if args.set:
        design += "-" + hashlib.sha256("\n".join(args.set).encode()).hexdigest()[:8]
    work = (args.work / f"{'quick' if args.quick else 'full'}-{design}").resolve()
    (work / "data").mkdir(parents=True, exist_ok=True)
    data.to_json(work / "data" / "umsab_low.jsonl", orient="records", lines=True, force_ascii=False)
    pool.to_json(work / "pool.jsonl", orient="records", lines=True, force_ascii=False)
    train_counts = data[data["split"] == "train"].groupby("language").size().to_dict()
    print(f"simulated train rows per language: {train_counts}; pool: {pool.groupby('language').size().to_dict()}")
    print(f"work folder (resumable): {work}", flush=True)
    common = [
        f"data.path={work / 'data'}",
        "data.max_rows_per_language=null",
        f"eval.max_rows_per_language={eval_rows if eval_rows else 'null'}",
        *args.set,
    ]
    runs_dir = work / "runs"
    runs: dict[str, dict[int, dict]] = {name: {} for name in variants}
    # The labeler first: every retrieval_self run needs it, whatever the seed order.
    if (
        "retrieval_self" in variants and not args.report
        and run_variant(REFERENCE, labeler_seed, common, work, runs_dir, labeler_seed) is None
    ):
        return 1
    # Seed-major order: after each seed every variant has a run, so a partial bench is balanced.
    for seed in seeds:
        for name in variants:
            run = (saved_run(runs_dir, name, seed) if args.report
                   else run_variant(name, seed, common, work, runs_dir, labeler_seed))
            if run is None and not args.report:
                return 1
            if run is not None:
                runs[name][seed] = run
    requested, wanted = list(seeds), list(variants)
    if args.report:
        # A variant still running enters with the seeds it has finished: the pooled seed spread
        # still gives it an interval, only a wider one.
        variants = [name for name in variants if runs[name]]
        seeds = [s for s in seeds if all(s in runs[name] for name in variants)]
        if REFERENCE not in variants or len(variants) < 2:
            print(f"'{REFERENCE}' and at least one other variant need a finished seed in {runs_dir}")
            return 1
        runs = {name: runs[name] for name in variants}

    default = default_variant(load_settings(DEFAULT_CONFIG))
    summary = ablation_summary({n: {s: r["f1"] for s, r in by_seed.items()} for n, by_seed in runs.items()}, default)
    summary["seeds"] = seeds
    print_table(summary, variants)
    first = next(iter(runs[REFERENCE].values()))
    write_result(
        out,
        {
            "units": "macro-F1 in 0..1; gap = high-resource mean - low-resource mean; intervals are 95% t intervals "
                     "over training seeds with the seed spread pooled over variants",
            **summary,
            "runs": {n: {str(s): r for s, r in by_seed.items()} for n, by_seed in runs.items()},
            "train_rows_per_language": train_counts,
            "pool_rows_per_language": pool.groupby("language").size().to_dict(),
            "test_rows_per_language": first["support"],
            "embedding_speed": speed,
            "low_resource": list(LOW),
            "low_fraction": LOW_FRACTION,
            "config": os.path.relpath(CONFIG, REPO),
            "overrides": args.set,
            "quick": args.quick,
            "seeds_requested": requested,
            "complete": set(wanted) <= set(runs) and all(set(requested) <= set(by_seed) for by_seed in runs.values()),
            "wall_seconds": time.perf_counter() - started,
            "run_seconds": sum(r["wall_seconds"] for by_seed in runs.values() for r in by_seed.values()),
            **machine(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
