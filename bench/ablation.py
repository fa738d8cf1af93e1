"""Ablation on UMSAB with simulated low resource: does augmentation close the gap?

Hindi and Arabic keep 5% of their train rows; the other languages keep the same subset size as
``configs/umsab_cpu.yaml`` (300 rows). The rest of the Hindi and Arabic train rows, without
labels, become the unlabelled pool for self-alignment (never val or test text). Three variants
are trained and evaluated through the real CLI, in one home, on the same rows:

* (a) no augmentation (``augment.enabled=false``);
* (b) retrieval augmentation (the default config);
* (c) (b) plus self-alignment, with the model of (a) as the current model that labels the pool;
* optionally (d) (b) plus two retrieval demonstrations per prompt (``--variants``).

Per variant: per-language macro-F1, the mean F1 of the low- and the high-resource languages,
and their gap. ``gap_closed`` is the best variant's fraction of (a)'s gap that it closes;
``high_resource_drop`` the largest drop of the high-resource mean against (a) (0..1 F1 units).

It first times embedding and indexing the full UMSAB train split (cold cache, then warm).

    python bench/ablation.py --quick   # 80 rows per language, about 15 minutes on 2 cores
    python bench/ablation.py           # about 40 minutes on 2 cores
    python bench/ablation.py --embedder embedded:multilingual-e5-small
    python bench/ablation.py --skip-speed --variants d_retrieval_demos --reuse-a-home <home of a run>
    python bench/ablation.py --skip-speed --variants b_retrieval --train-seed 7   # run-to-run noise

Writes ``bench/results/ablation.json`` (``ablation_quick.json``); the simulated dataset and the
homes live in a temporary folder, never in the repository. Exits 0 without writing anything
when UMSAB is absent.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from bench_data import write_result  # noqa: E402
from sentibridge.config import load_settings  # noqa: E402
from sentibridge.augment.embedding import embed_texts, load_embedder  # noqa: E402
from sentibridge.data.ingest import read_dataset  # noqa: E402
from sentibridge.augment.retrieval import build_index  # noqa: E402
from sentibridge.data.split import split_rows, subsample_per_language  # noqa: E402
from umsab import mean, run_cli  # noqa: E402

UMSAB = REPO.parent / "shared" / "data" / "umsab"
LOW = ("hi", "ar")
LOW_FRACTION = 0.05
CONFIG = REPO / "configs" / "umsab_cpu.yaml"
VARIANTS = ("a_none", "b_retrieval", "c_retrieval_self")
OPTIONAL_VARIANTS = ("d_retrieval_demos",)
GOAL_GAP_CLOSED = 0.30
GOAL_MAX_HIGH_DROP = 0.01


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


def gap_summary(per_language: dict[str, float]) -> dict[str, float]:
    low = mean(per_language[lang] for lang in LOW)
    high = mean(v for lang, v in per_language.items() if lang not in LOW)
    return {"low_mean": low, "high_mean": high, "gap": high - low}


def ablation_summary(f1: dict[str, dict[str, float]]) -> dict:
    """gap_closed and high_resource_drop of variants b and c against a (pure; unit-tested)."""
    gaps = {name: gap_summary(per_lang) for name, per_lang in f1.items()}
    base = gaps[VARIANTS[0]]
    closed = {
        name: (base["gap"] - g["gap"]) / base["gap"] if base["gap"] > 0 else 0.0
        for name, g in gaps.items() if name != VARIANTS[0]
    }
    drops = {name: max(0.0, base["high_mean"] - g["high_mean"]) for name, g in gaps.items() if name != VARIANTS[0]}
    best = max(closed, key=closed.get)
    return {
        "gaps": gaps,
        "gap_closed_by_variant": closed,
        "high_resource_drop_by_variant": drops,
        "best_variant": best,
        "gap_closed": closed[best],
        "high_resource_drop": max(drops.values()),
        "goal": {
            "gap_closed_at_least": GOAL_GAP_CLOSED,
            "high_resource_drop_at_most": GOAL_MAX_HIGH_DROP,
            "met": closed[best] >= GOAL_GAP_CLOSED and drops[best] <= GOAL_MAX_HIGH_DROP,
        },
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="80 train / 80 test rows per language")
    parser.add_argument("--skip-speed", action="store_true", help="skip the embedding speed measurement")
    parser.add_argument("--embedder", default=None, help="augment.embedder for variants b and c (default: the config's)")
    parser.add_argument(
        "--reuse-a-home", type=Path, default=None,
        help="take variant (a) (it uses no embedder) from an earlier ablation run's home instead of retraining it",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS[1:]),
        help=f"comma-separated variants besides a_none, from {', '.join(VARIANTS[1:] + OPTIONAL_VARIANTS)}",
    )
    parser.add_argument("--train-seed", type=int, default=None, help="train.seed for every variant (run-to-run noise)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS[1:] + OPTIONAL_VARIANTS))
    if unknown or not chosen:
        parser.error(f"unknown variants {unknown}; choose from {VARIANTS[1:] + OPTIONAL_VARIANTS}")
    variants = (VARIANTS[0], *chosen)
    if not UMSAB.is_dir():
        print(f"UMSAB not found at {UMSAB}: nothing to measure")
        return 0
    settings = load_settings(CONFIG, [f"augment.embedder={args.embedder}"] if args.embedder else [])
    suffix = ("_" + args.embedder.split(":")[-1].split("/")[-1]) if args.embedder else ""
    if tuple(chosen) != VARIANTS[1:]:
        suffix += "_" + "-".join(chosen)
    if args.train_seed is not None:
        suffix += f"_seed{args.train_seed}"
    out = args.out or REPO / "bench" / "results" / f"ablation{suffix}{'_quick' if args.quick else ''}.json"
    high_rows = 80 if args.quick else settings.data.max_rows_per_language
    eval_rows = 80 if args.quick else 300
    started = time.perf_counter()
    rows = read_dataset(UMSAB)

    speed = None
    if not args.skip_speed:
        train_texts = split_rows(rows, settings.split).train["text"].tolist()
        speed = embedding_speed(
            train_texts, settings.augment.embedder, settings.augment.embed_batch_size, settings.augment.embed_precision
        )
        print(
            f"embedding {speed['texts']} train texts: {speed['embed_seconds_cold']:.1f} s cold "
            f"({speed['texts_per_s']:.0f} texts/s), index {speed['index_seconds']:.2f} s, "
            f"{speed['embed_seconds_cached']:.1f} s cached ({speed['cache_speedup']:.0f}x)",
            flush=True,
        )

    work = Path(tempfile.mkdtemp(prefix="sentibridge-ablation-"))
    data, pool = simulated_dataset(rows, high_rows, settings.split.seed)
    (work / "data").mkdir()
    data.to_json(work / "data" / "umsab_low.jsonl", orient="records", lines=True, force_ascii=False)
    pool.to_json(work / "pool.jsonl", orient="records", lines=True, force_ascii=False)
    train_counts = data[data["split"] == "train"].groupby("language").size().to_dict()
    print(f"simulated train rows per language: {train_counts}; pool: {pool.groupby('language').size().to_dict()}")
    common = [
        f"data.path={work / 'data'}",
        "data.max_rows_per_language=null",
        f"eval.max_rows_per_language={eval_rows}",
        f"augment.embedder={settings.augment.embedder}",
        *([f"train.seed={args.train_seed}"] if args.train_seed is not None else []),
    ]
    overrides = {
        "a_none": ["augment.enabled=false"],
        "b_retrieval": [],
        "c_retrieval_self": [
            "augment.self_alignment.enabled=true",
            f"augment.self_alignment.pool_path={work / 'pool.jsonl'}",
        ],
        # Two examples of about 40 tokens each need room next to the prompt.
        "d_retrieval_demos": ["demonstrations.k=2", "model.max_length=384"],
    }
    home = work / "home"
    results, f1 = {}, {}
    reused = None
    if args.reuse_a_home:
        results["a_none"] = reused = _registered_result(args.reuse_a_home, version="1")
        f1["a_none"] = {lang: v["f1"] for lang, v in reused["per_language"].items()}
        print(f"variant a_none reused from {args.reuse_a_home} (registered version 1)")
    for name in variants:
        if name in results:
            continue
        extra = list(overrides[name])
        if name == "c_retrieval_self":
            extra.append(f"augment.self_alignment.labeler={_merged_model(home, results['a_none'])}")
        code, payload, seconds = run_cli(CONFIG, common + extra, home)
        if code != 0 or payload is None:
            print(f"variant {name} failed (exit {code})")
            return 1
        results[name] = {**payload, "wall_seconds": seconds}
        f1[name] = {lang: v["f1"] for lang, v in payload["per_language"].items()}

    summary = ablation_summary(f1)
    langs = sorted(f1[VARIANTS[0]])
    print("\n| language | " + " | ".join(variants) + " | " + " | ".join(f"added ({v[0]})" for v in chosen) + " |")
    print("|---|" + "---:|" * (len(variants) + len(chosen)))
    for lang in langs:
        added = [
            {r["language"]: r["retrieved"] + r["self_labelled"] for r in results[v]["augmentation"]["languages"]}.get(lang, 0)
            for v in chosen
        ]
        tag = " (low)" if lang in LOW else ""
        print(f"| {lang}{tag} | " + " | ".join(f"{100 * f1[v][lang]:.1f}" for v in variants) + " | " + " | ".join(map(str, added)) + " |")
    for key in ("low_mean", "high_mean", "gap"):
        print(f"| {key} | " + " | ".join(f"{100 * summary['gaps'][v][key]:.1f}" for v in variants) + " |" + " |" * len(chosen))
    print(
        f"gap closed: {summary['gap_closed']:.1%} by {summary['best_variant']} (goal 30%); "
        f"high-resource drop: {100 * summary['high_resource_drop']:.1f} points (goal <= 1)"
    )
    write_result(
        out,
        {
            **summary,
            "per_language": f1,
            "augmentation": {v: results[v]["augmentation"] for v in chosen},
            "train": {v: results[v].get("train") for v in variants},
            "train_rows_per_language": train_counts,
            "pool_rows_per_language": pool.groupby("language").size().to_dict(),
            "eval_rows_per_language": eval_rows,
            "embedding_speed": speed,
            "embedder": settings.augment.embedder,
            "a_none_reused_from": str(args.reuse_a_home) if reused else None,
            "train_seed": args.train_seed if args.train_seed is not None else settings.train.seed,
            "registry": {v: {k: results[v].get(k) for k in ("tracking_uri", "registered_model", "model_version")} for v in variants},
            "low_resource": list(LOW),
            "low_fraction": LOW_FRACTION,
            "quick": args.quick,
            "wall_seconds": time.perf_counter() - started,
            "cpu": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    )
    return 0


def _registered_result(home: Path, version: str) -> dict:
    """A registered version of an earlier run, as the CLI's JSON would give it (per-language F1)."""
    import mlflow

    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    name = "sentibridge-sentiment"
    metrics = client.get_run(client.get_model_version(name, version).run_id).data.metrics
    per_language = {
        key.removeprefix("f1_"): {"f1": value}
        for key, value in metrics.items()
        if key.startswith("f1_") and key != "f1_macro_avg"
    }
    return {"tracking_uri": uri, "registered_model": name, "model_version": version, "per_language": per_language}


def _merged_model(home: Path, result: dict) -> Path:
    """The merged weights of a registered version, fetched from that home's MLflow registry."""
    import mlflow

    mlflow.set_tracking_uri(result["tracking_uri"])
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{result['registered_model']}/{result['model_version']}", dst_path=str(home.parent / "labeler")))
    return next(p.parent for p in local.rglob("config.json") if (p.parent / "model.safetensors").is_file())


if __name__ == "__main__":
    sys.exit(main())
