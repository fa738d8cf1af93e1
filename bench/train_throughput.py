"""Train-step throughput: sentibridge's LoRA loop against a naive transformers Trainer + peft.

Same model (the real Gemma-3-270M), rows, batch size and LoRA shape, in one run:

* ours (auto precision: bf16 where the hardware has it), answer-only logits, length grouping;
* ours in fp32, so the share of bf16 in the speedup is visible;
* baseline: ``transformers.Trainer`` + peft in fp32, full-vocabulary logits at every position
  (labels masked to the answer, so both optimise the same loss).

Tokens are counted identically: non-pad tokens of each step's batch. Rates are steady state:
per-step time summed over all steps but the first (warm-up), same for every variant.

    python -m bench.train_throughput --quick
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from bench.common import load_rows, real_model_path, write_result
from sentibridge.model.base import load_causal_lm, load_tokenizer
from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.model.instructions import build_records
from sentibridge.model.precision import base_dtype, default_device, resolve_precision
from sentibridge.model.batching import collate, encode_records
from sentibridge.model.training import TrainJob, add_lora, train_lora


def steady_rate(tokens: list[float], seconds: list[float]) -> float:
    """Tokens per second over all steps but the first."""
    tokens, seconds = tokens[1:] or tokens, seconds[1:] or seconds
    return sum(tokens) / sum(seconds)


def run_ours(model_path: str, tokenizer, records, train_cfg: TrainConfig, lora: LoraConfig, device) -> dict:
    precision = resolve_precision(train_cfg.precision, device)
    model = load_causal_lm(model_path, ModelConfig(), device, base_dtype(precision))
    tokens, seconds = [], []

    def on_log(step: int, metrics: dict) -> None:
        if "tokens" in metrics:
            tokens.append(metrics["tokens"])
            seconds.append(metrics["step_seconds"])

    with tempfile.TemporaryDirectory() as out:
        job = TrainJob(model_path, ModelConfig(), lora, train_cfg, records, [], Path(out), torch.device(device).type)
        result = train_lora(model, tokenizer, job, on_log, progress=False)
    return {
        "tokens_per_s": steady_rate(tokens, seconds),
        "precision": result.precision,
        "steps": result.steps,
        "tokens": sum(tokens),
        "step_seconds": seconds,
        "train_loss": result.train_loss,
    }


def run_baseline(model_path: str, tokenizer, records, train_cfg: TrainConfig, lora: LoraConfig, device) -> dict:
    """transformers Trainer + peft, fp32, logits over the full vocabulary at every position."""
    model = add_lora(load_causal_lm(model_path, ModelConfig(), device, torch.float32), lora)
    examples = encode_records(records, tokenizer)
    pad_id = tokenizer.pad_token_id
    batch_tokens: list[float] = []

    def collator(features):
        batch = collate(features, pad_id)
        batch_tokens.append(float(batch["attention_mask"].sum()))
        return batch

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=train_cfg.batch_size,
            max_steps=train_cfg.max_steps,
            learning_rate=train_cfg.learning_rate,
            lr_scheduler_type=train_cfg.lr_scheduler,
            warmup_steps=math.ceil(train_cfg.warmup_ratio * train_cfg.max_steps),
            max_grad_norm=train_cfg.max_grad_norm,
            seed=train_cfg.seed,
            use_cpu=torch.device(device).type == "cpu",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collator, callbacks=[timer])
        output = trainer.train()
    steps = len(timer.seconds)
    return {
        "tokens_per_s": steady_rate(batch_tokens[:steps], timer.seconds),
        "precision": "fp32",
        "steps": steps,
        "tokens": sum(batch_tokens[:steps]),
        "step_seconds": timer.seconds,
        "train_loss": output.training_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rows and steps (a few minutes on 2 cores)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per variant")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_throughput.json"))
    args = parser.parse_args()
    rows = args.rows or (48 if args.quick else 256)
    steps = args.steps or (6 if args.quick else 12)

    torch.manual_seed(0)
    device = default_device()
    model_path = real_model_path()
    tokenizer = load_tokenizer(model_path, ModelConfig())
    records = build_records(load_rows(rows), tokenizer, args.max_length, seed=0)
    lora = LoraConfig()
    common = dict(batch_size=args.batch_size, max_steps=steps, resume=False, eval_rows=0, seed=0)

    results = {}
    results["ours"] = run_ours(model_path, tokenizer, records, TrainConfig(precision="auto", **common), lora, device)
    print(f"ours ({results['ours']['precision']}): {results['ours']['tokens_per_s']:.1f} tok/s {results['ours']['step_seconds']}", flush=True)
    results["ours_fp32"] = run_ours(model_path, tokenizer, records, TrainConfig(precision="fp32", **common), lora, device)
    print(f"ours (fp32): {results['ours_fp32']['tokens_per_s']:.1f} tok/s {results['ours_fp32']['step_seconds']}", flush=True)
    results["baseline"] = run_baseline(model_path, tokenizer, records, TrainConfig(precision="fp32", **common), lora, device)
    print(f"baseline (fp32): {results['baseline']['tokens_per_s']:.1f} tok/s {results['baseline']['step_seconds']}", flush=True)

    base = results["baseline"]["tokens_per_s"]
    summary = {
        "speedup": results["ours"]["tokens_per_s"] / base,
        "speedup_fp32": results["ours_fp32"]["tokens_per_s"] / base,
        "ours_tokens_per_s": results["ours"]["tokens_per_s"],
        "ours_fp32_tokens_per_s": results["ours_fp32"]["tokens_per_s"],
        "baseline_tokens_per_s": base,
        "precision": results["ours"]["precision"],
        "steps": steps,
        "rows": rows,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lora": lora.model_dump(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "quick": args.quick,
        "runs": results,
    }
    print()
    print("| variant | precision | tokens/s | speedup vs baseline |")
    print("|---|---|---|---|")
    for name in ("baseline", "ours_fp32", "ours"):
        run = results[name]
        print(f"| {name} | {run['precision']} | {run['tokens_per_s']:.1f} | {run['tokens_per_s'] / base:.2f}x |")
    write_result(args.out, summary)


if __name__ == "__main__":
    main()
