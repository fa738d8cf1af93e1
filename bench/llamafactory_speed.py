"""Training time at LLaMA-Factory's setting: sentibridge against LLaMA-Factory, side by side.

Both train the same records on the same machine in one run: ``umsab_cpu.yaml``'s 2,400 UMSAB
train rows (300 per language), the real Gemma-3-270M, LoRA r=16 (alpha 32, dropout 0:
LLaMA-Factory's defaults) on all linear layers, batch 8, cutoff 128, one epoch, cosine schedule
with 10% warm-up, learning rate 2e-4, bf16 where the CPU has it. LLaMA-Factory reads sentibridge's
own export (``export_llamafactory``, template ``gemma``: the text-only
Gemma format; ``gemma3`` wants an image processor), so both see the same prompts.

Times are training only (LLaMA-Factory's ``train_runtime``; our ``train_seconds``), without
model loading or tokenisation. Ours runs twice, before and after LLaMA-Factory, so drift of a
noisy machine shows. Both adapters are merged and scored by sentibridge's scorer on the whole
test split, and compared with the gate's paired interval (training-seed noise included).

LLaMA-Factory needs its own virtual environment (its pins clash with ours), for example::

    python -m venv ../lfenv && ../lfenv/bin/pip install torch==2.13.0 && ../lfenv/bin/pip install llamafactory==0.9.5
    ../lfenv/bin/pip install torch==2.13.0  # llamafactory pulls a newer torch; keep ours
    ../lfenv/bin/pip uninstall -y torchaudio torchvision  # no build matches torch 2.13.0 ...
    mkdir ../lfenv/lib/python3.11/site-packages/torchaudio  # ... and an empty stand-in satisfies
    touch ../lfenv/lib/python3.11/site-packages/torchaudio/__init__.py  # its top-level import
    python -m bench.llamafactory_speed --llamafactory-cli ../lfenv/bin/llamafactory-cli

About 50 minutes on 2 cores (LLaMA-Factory's training alone is about 21). ``--quick``, a smoke run
of a few minutes: 16 train rows and 10 test rows per language. Writes
``bench/results/llamafactory_speed.json``; exits 0 without writing when UMSAB or the CLI is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from bench.common import REPO, UMSAB, bench_rows, machine, mean, real_model_path, write_result
from sentibridge.config import Settings
from sentibridge.config_loading import load_settings
from sentibridge.inference.predict import predict_rows
from sentibridge.model.base import load_causal_lm, load_tokenizer
from sentibridge.model.instructions import build_records, export_llamafactory
from sentibridge.model.merge import merge_adapter
from sentibridge.model.precision import base_dtype, resolve_precision
from sentibridge.model.training import TrainJob, train_lora
from sentibridge.registry.gate import Reference, gate_predictions, per_language_f1

CONFIG = REPO / "configs" / "umsab_cpu.yaml"
#: LLaMA-Factory's setting in sentibridge's terms (the rest is umsab_cpu.yaml's defaults).
SETTING = ("model.max_length=128", "lora.dropout=0", "lora.r=16", "lora.alpha=32", "train.batch_size=8", "train.epochs=1")
#: The issue's reference: LLaMA-Factory 0.9.5 on this setting, measured on another day.
REPORTED_LLAMAFACTORY_SECONDS = 975.0
GOAL_SPEEDUP = 2.5


def llamafactory_config(settings: Settings, model_path: str, dataset_dir: Path, output_dir: Path, bf16: bool) -> dict:
    """The ``llamafactory-cli train`` YAML for ``settings`` (LoRA SFT, no saving mid-run, no eval)."""
    train, lora = settings.train, settings.lora
    return {
        "model_name_or_path": model_path,
        "trust_remote_code": False,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "lora_target": "all",
        "dataset_dir": str(dataset_dir),
        "dataset": "sentibridge_train",
        "template": "gemma",
        "cutoff_len": settings.model.max_length,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "logging_steps": 10,
        "save_strategy": "no",
        "report_to": "none",
        "per_device_train_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "learning_rate": train.learning_rate,
        "num_train_epochs": train.epochs,
        "lr_scheduler_type": train.lr_scheduler,
        "warmup_ratio": train.warmup_ratio,
        "max_grad_norm": train.max_grad_norm,
        "seed": train.seed,
        "bf16": bf16,
        "use_cpu": True,
        # LLaMA-Factory checkpoints activations by default, which costs a recomputed forward pass
        # per step; a 270M model needs no such memory saving, so it runs at its fastest here.
        "disable_gradient_checkpointing": True,
        "dataloader_num_workers": 0,
    }


def speedup_summary(ours_seconds: list[float], llamafactory_seconds: float) -> dict:
    """LLaMA-Factory's seconds over ours, for each of our runs and for their mean."""
    ours = sum(ours_seconds) / len(ours_seconds)
    return {
        "ours_seconds": ours_seconds,
        "ours_mean_seconds": ours,
        "llamafactory_seconds": llamafactory_seconds,
        "speedup": llamafactory_seconds / ours,
        "speedup_each": [llamafactory_seconds / s for s in ours_seconds],
        "goal_speedup": GOAL_SPEEDUP,
        "met": llamafactory_seconds / max(ours_seconds) >= GOAL_SPEEDUP,
    }


def train_ours(settings: Settings, model_path: str, records: list[dict], out: Path) -> tuple[Path, float]:
    """Our LoRA loop on ``records``: (adapter folder, training seconds)."""
    precision = resolve_precision(settings.train.precision, "cpu")
    tokenizer = load_tokenizer(model_path, settings.model)
    model = load_causal_lm(model_path, settings.model, "cpu", base_dtype(precision))
    job = TrainJob(model_path, settings.model, settings.lora, settings.train, records, [], out, "cpu")
    result = train_lora(model, tokenizer, job)
    return result.adapter_dir, result.train_seconds


def library_versions(python: str) -> dict[str, str]:
    """torch, transformers, peft and accelerate versions of the interpreter ``python``."""
    names = ("torch", "transformers", "peft", "accelerate")
    code = f"import json, importlib.metadata as m; print(json.dumps({{n: m.version(n) for n in {names!r}}}))"
    return json.loads(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout)


def train_llamafactory(cli: str, config: dict, work: Path) -> tuple[Path, float, float]:
    """``llamafactory-cli train``: (adapter folder, its train_runtime, wall seconds)."""
    path = work / "llamafactory.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "DISABLE_VERSION_CHECK": "1",
           "WANDB_DISABLED": "true", "PYTHONPATH": ""}
    started = time.perf_counter()
    subprocess.run([cli, "train", str(path)], check=True, env=env, cwd=work)
    wall = time.perf_counter() - started
    results = json.loads((Path(config["output_dir"]) / "train_results.json").read_text(encoding="utf-8"))
    return Path(config["output_dir"]), float(results["train_runtime"]), wall


def score(settings: Settings, model_path: str, adapter: Path, test: pd.DataFrame, work: Path) -> pd.DataFrame:
    """Merge ``adapter`` into the base and score ``test`` as the evaluate step does."""
    merged = merge_adapter(model_path, adapter, work / "merged", settings.model)
    precision = resolve_precision(settings.eval.precision, "cpu")
    model = load_causal_lm(str(merged), settings.model, "cpu", base_dtype(precision))
    tokenizer = load_tokenizer(str(merged), settings.model)
    return predict_rows(model, tokenizer, test, settings.model.max_length, settings.eval.batch_size,
                        torch.device("cpu"), precision)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llamafactory-cli", default=None, help="llamafactory-cli of a separate virtual environment")
    parser.add_argument("--quick", action="store_true", help="16 train rows and 10 test rows per language")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not UMSAB.is_dir():
        print(f"UMSAB not found at {UMSAB}: nothing to measure")
        return 0
    if not args.llamafactory_cli or not Path(args.llamafactory_cli).is_file():
        print("llamafactory-cli not given or not found (--llamafactory-cli): nothing to compare against")
        return 0
    out = args.out or REPO / "bench" / "results" / f"llamafactory_speed{'_quick' if args.quick else ''}.json"
    overrides = [*SETTING, *(["data.max_rows_per_language=16", "eval.max_rows_per_language=10"] if args.quick else [])]
    settings = load_settings(CONFIG, overrides)
    os.chdir(REPO)  # the config's data path is relative to the repository
    train_rows, test = bench_rows(settings)
    model_path = real_model_path()
    tokenizer = load_tokenizer(model_path, settings.model)
    records = build_records(train_rows, tokenizer, settings.model.max_length, settings.instructions.seed)
    bf16 = resolve_precision(settings.train.precision, "cpu") == "bf16"
    print(f"{len(records)} train records, {len(test)} test rows, bf16 {bf16}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sentibridge-lf-") as tmp:
        work = Path(tmp)
        export_llamafactory(records, work / "data")
        ours_adapter, first = train_ours(settings, model_path, records, work / "ours")
        print(f"ours: {first:.0f} s", flush=True)
        config = llamafactory_config(settings, model_path, work / "data", work / "lf", bf16)
        lf_adapter, lf_seconds, lf_wall = train_llamafactory(args.llamafactory_cli, config, work)
        print(f"LLaMA-Factory: {lf_seconds:.0f} s ({lf_wall:.0f} s wall)", flush=True)
        _, second = train_ours(settings, model_path, records, work / "ours_again")
        print(f"ours again: {second:.0f} s", flush=True)
        ours_pred = score(settings, model_path, ours_adapter, test, work / "ours")
        lf_pred = score(settings, model_path, lf_adapter, test, work / "lf_scored")

    speed = speedup_summary([first, second], lf_seconds)
    ours_f1, lf_f1 = per_language_f1(ours_pred), per_language_f1(lf_pred)
    decision = gate_predictions(ours_pred, Reference("llamafactory", None, lf_pred, "measured"), settings.gate, None)
    print("\n| language | ours | LLaMA-Factory | ours − LLaMA-Factory [interval] |")
    print("|---|---:|---:|---|")
    for row in decision.languages:
        lang = row["language"]
        print(f"| {lang} | {100 * ours_f1[lang]:.1f} | {100 * lf_f1[lang]:.1f} | "
              f"{row['delta']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}] |")
    m = decision.mean
    print(f"| mean | {100 * mean(ours_f1.values()):.1f} | {100 * mean(lf_f1.values()):.1f} | "
          f"{m['delta']:+.1f} [{m['ci_low']:+.1f}, {m['ci_high']:+.1f}] |")
    print(f"\ntraining seconds: ours {first:.0f} and {second:.0f}, LLaMA-Factory {lf_seconds:.0f}: "
          f"{speed['speedup']:.2f}x faster (goal {GOAL_SPEEDUP}x: {'met' if speed['met'] else 'not met'}); "
          f"the issue's LLaMA-Factory figure was {REPORTED_LLAMAFACTORY_SECONDS:.0f} s")
    write_result(
        out,
        {
            "units": "seconds of training; macro-F1 in 0..1; deltas and intervals in F1 points (the gate's rule)",
            **speed,
            "llamafactory_wall_seconds": lf_wall,
            "reported_llamafactory_seconds": REPORTED_LLAMAFACTORY_SECONDS,
            "f1": {"ours": ours_f1, "llamafactory": lf_f1},
            "mean_f1": {"ours": mean(ours_f1.values()), "llamafactory": mean(lf_f1.values())},
            "comparison": decision.to_dict(),
            "setting": list(overrides),
            "llamafactory_config": {k: v for k, v in config.items() if k not in ("dataset_dir", "output_dir")},
            "versions": {"ours": library_versions(sys.executable),
                         "llamafactory": library_versions(str(Path(args.llamafactory_cli).parent / "python"))},
            "train_records": len(records),
            "test_rows": len(test),
            "quick": args.quick,
            **machine(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
