"""Zero-resource transfer on UMSAB: train without a language, evaluate on it.

For each left-out language L, the model is trained through the real CLI on the other UMSAB
languages (the rows of ``configs/umsab_cpu.yaml``: 300 train rows per language) and evaluated on
L's whole test split. It is compared with

* the base model zero-shot on the same rows: the gate's reference in a fresh home, with the
  gate's paired-bootstrap interval (test rows plus the training-seed noise ``gate.seed_std``);
* the in-language model: ``configs/umsab_cpu.yaml`` trained with L included, read from
  ``bench/results/umsab.json`` (same split seed and test rows; one training seed).

``recovered`` is the share of the in-language model's gain over zero-shot that transfer keeps.

    python -m bench.transfer                       # hi ar pt: about 30 minutes on 2 cores
    python -m bench.transfer --languages hi ar pt it

Writes ``bench/results/transfer.json``. Every finished language is saved under ``--work`` and
skipped when the command is run again. Exits 0 without writing anything when UMSAB is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bench.common import REPO, UMSAB, cpu_has_bf16, cpu_model, mean, run_cli, write_result
from sentibridge.config import Settings
from sentibridge.config_loading import load_settings
from sentibridge.data.ingest import read_dataset
from sentibridge.data.split import split_rows
from sentibridge.data.validation import validate_rows

CONFIG = REPO / "configs" / "umsab_cpu.yaml"
IN_LANGUAGE = REPO / "bench" / "results" / "umsab.json"
LANGUAGES = ("hi", "ar", "pt")


def transfer_dataset(rows: pd.DataFrame, settings: Settings, left_out: str) -> pd.DataFrame:
    """The pipeline's own splits with ``left_out`` removed from train and val and kept alone in test.

    Rows carry an explicit ``split`` column, so the CLI keeps this assignment.
    """
    split = split_rows(validate_rows(rows, settings.data).valid, settings.split, settings.data)
    parts = [
        split.train[split.train["language"] != left_out].assign(split="train"),
        split.val[split.val["language"] != left_out].assign(split="val"),
        split.test[split.test["language"] == left_out].assign(split="test"),
    ]
    return pd.concat(parts, ignore_index=True)[["id", "text", "label", "language", "split"]]


def transfer_summary(left_out: str, payload: Mapping, in_language: Mapping[str, float] | None) -> dict:
    """Transfer F1 against zero-shot (with the gate's interval) and against the in-language model."""
    decision = payload["decision"]
    if decision["reference"] != "base_zero_shot":
        raise ValueError(f"{left_out}: the gate compared with {decision['reference']}, not the base model zero-shot")
    row = next(r for r in decision["languages"] if r["language"] == left_out)
    transfer, zero_shot = row["candidate"], row["reference"]
    in_lang = (in_language or {}).get(left_out)
    gain = None if in_lang is None else in_lang - zero_shot
    return {
        "transfer_f1": transfer,
        "zero_shot_f1": zero_shot,
        "in_language_f1": in_lang,
        "vs_zero_shot_points": {k: row[k] for k in ("delta", "ci_low", "ci_high", "p_better")},
        "vs_in_language_points": None if in_lang is None else 100 * (transfer - in_lang),
        "recovered": None if not gain or gain <= 0 else (transfer - zero_shot) / gain,
        "test_rows": payload["per_language"][left_out]["support"],
    }


def in_language_scores(path: Path, settings: Settings) -> tuple[dict[str, float] | None, dict[str, int] | None]:
    """Per-language F1 and test supports of the in-language model, if ``path`` is the same recipe's run."""
    if not path.is_file():
        return None, None
    result = json.loads(path.read_text(encoding="utf-8"))
    if result.get("quick") or result.get("config", {}).get("file") != os.path.relpath(CONFIG, REPO):
        return None, None
    stored = result["config"]["settings"]
    if stored["split"] != settings.split.model_dump(mode="json") or stored["data"]["max_rows_per_language"] != settings.data.max_rows_per_language:
        return None, None
    support = {lang: v["support"] for lang, v in result["cli"]["per_language"].items()}
    return result["ours"], support


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", nargs="+", default=list(LANGUAGES), help="languages to leave out, one run each")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    parser.add_argument("--work", type=Path, default=REPO / ".sentibridge" / "transfer",
                        help="one home per left-out language and the finished runs; rerun to resume")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "transfer.json")
    args = parser.parse_args()
    if not UMSAB.is_dir():
        print(f"UMSAB not found at {UMSAB}: nothing to measure")
        return 0
    settings = load_settings(CONFIG, args.set)
    rows = read_dataset(UMSAB)
    known = sorted(rows["language"].unique())
    unknown = sorted(set(args.languages) - set(known))
    if unknown:
        parser.error(f"languages not in UMSAB: {', '.join(unknown)} (it has {', '.join(known)})")
    in_language, in_support = in_language_scores(IN_LANGUAGE, settings) if not args.set else (None, None)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    for lang in args.languages:
        folder = (args.work / ("custom" if args.set else "umsab_cpu") / lang).resolve()
        done = folder / "result.json"
        if done.is_file():
            payload = json.loads(done.read_text(encoding="utf-8"))
        else:
            (folder / "data").mkdir(parents=True, exist_ok=True)
            data = transfer_dataset(rows, settings, lang)
            data.to_json(folder / "data" / "umsab_without.jsonl", orient="records", lines=True, force_ascii=False)
            print(f"\n=== left out: {lang}; train rows per language: "
                  f"{data[data['split'] == 'train'].groupby('language').size().to_dict()} ===", flush=True)
            overrides = [f"data.path={folder / 'data'}", "data.max_rows_per_language=null", *args.set]
            code, payload, seconds = run_cli(CONFIG, overrides, folder / "home")
            if code != 0 or not payload or not payload.get("ok"):
                print(f"left-out {lang} failed (exit {code})")
                return 1
            payload["wall_seconds"] = seconds
            done.write_text(json.dumps(payload, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        same_rows = in_support is not None and in_support.get(lang) == payload["per_language"][lang]["support"]
        results[lang] = {
            **transfer_summary(lang, payload, in_language if same_rows else None),
            "train_rows_per_language": {r["language"]: r["original"] for r in payload["augmentation"]["languages"]},
            "train_seconds": payload["train"].get("train_seconds"),
            "wall_seconds": payload.get("wall_seconds"),
        }

    print("\nmacro-F1 x 100 on the left-out language's whole test split")
    print("| left out | test rows | zero-shot | transfer | transfer - zero-shot [90% interval] | in-language | recovered |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for lang, r in results.items():
        v = r["vs_zero_shot_points"]
        in_lang = "—" if r["in_language_f1"] is None else f"{100 * r['in_language_f1']:.1f}"
        rec = "—" if r["recovered"] is None else f"{r['recovered']:.0%}"
        print(f"| {lang} | {r['test_rows']} | {100 * r['zero_shot_f1']:.1f} | {100 * r['transfer_f1']:.1f} | "
              f"{v['delta']:+.1f} [{v['ci_low']:+.1f}, {v['ci_high']:+.1f}] | {in_lang} | {rec} |")
    means = {
        key: mean(r[key] for r in results.values())
        for key in ("zero_shot_f1", "transfer_f1", "in_language_f1")
    }
    print(f"mean: zero-shot {100 * means['zero_shot_f1']:.1f}, transfer {100 * means['transfer_f1']:.1f}"
          + (f", in-language {100 * means['in_language_f1']:.1f}" if means["in_language_f1"] is not None else ""))
    write_result(
        args.out,
        {
            "units": "macro-F1 in 0..1; intervals in points, the gate's paired bootstrap with gate.seed_std, "
                     "each end a one-sided 95% bound",
            "languages": list(results),
            "results": results,
            "means": means,
            "config": os.path.relpath(CONFIG, REPO),
            "overrides": args.set,
            "in_language_source": os.path.relpath(IN_LANGUAGE, REPO) if in_language else None,
            "train_seed": settings.train.seed,
            "wall_seconds": time.perf_counter() - started,
            "cpu_model": cpu_model(),
            "cpu_native_bf16": cpu_has_bf16(),
            "cpu": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
