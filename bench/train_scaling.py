"""Data-parallel scaling of LoRA training: 1 and 2 worker processes side by side in one run.

Same model (the real Gemma-3-270M), rows, seed, LoRA shape and global batch (``batch_size``
rows per optimiser step, split across the processes), same number of optimiser steps. Both
runs go through the same launcher (``sentibridge.model.launch``), so wall time includes the
workers' start-up; ``train_seconds`` and tokens/s are the training loop alone. Each adapter is
merged and scored on the same held-out rows (macro-F1 over all rows and per language).

On CPU, each of N workers gets cores/N threads (``OMP_NUM_THREADS``): on a 2-core machine 2
processes mostly trade intra-op threads for processes, so expect little gain. A variant ``PxT``
runs P processes of T threads each; ``1x1`` separates the effect of threads from that of processes.

    python -m bench.train_scaling --quick
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from sklearn.metrics import f1_score

from bench.common import load_rows, real_model_path, write_result
from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.inference.scoring import score_records
from sentibridge.model.base import load_causal_lm, load_tokenizer
from sentibridge.model.instructions import SERVING_TEMPLATE, build_records
from sentibridge.model.launch import run_workers, write_job
from sentibridge.model.training import TrainJob
from sentibridge.model.merge import merge_adapter
from sentibridge.model.precision import base_dtype, resolve_precision


def f1_scores(model_path: str, adapter_dir: Path, eval_frame, tokenizer, folder: Path, precision) -> dict:
    """Macro-F1 of the merged adapter on ``eval_frame``, overall and per language."""
    merged = merge_adapter(model_path, adapter_dir, folder / "merged", ModelConfig())
    model = load_causal_lm(str(merged), ModelConfig(), "cpu", base_dtype(precision))
    records = build_records(eval_frame, tokenizer, 256, seed=0, template=SERVING_TEMPLATE)
    preds = score_records(model, tokenizer, records, 16, "cpu", precision, progress=False).preds
    y_true = eval_frame["label"].to_numpy()
    per_language = {
        lang: float(f1_score(y_true[mask], preds[mask], average="macro"))
        for lang in sorted(eval_frame["language"].unique())
        for mask in [(eval_frame["language"] == lang).to_numpy()]
    }
    return {"f1_macro": float(f1_score(y_true, preds, average="macro")), "f1_per_language": per_language}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (several minutes on 2 cores)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8, help="global rows per optimiser step")
    parser.add_argument("--eval-rows", type=int, default=90)
    parser.add_argument(
        "--variants", nargs="+", default=["1", "1x1", "2"],
        help="P (P processes, cores/P threads each) or PxT (T threads each)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_scaling.json"))
    args = parser.parse_args()
    steps = args.steps or (16 if args.quick else 60)

    model_path = real_model_path()
    tokenizer = load_tokenizer(model_path, ModelConfig())
    frame = load_rows(args.eval_rows + steps * args.batch_size, seed=2)
    eval_frame, train_frame = frame.head(args.eval_rows).reset_index(drop=True), frame.iloc[args.eval_rows :]
    train_records = build_records(train_frame, tokenizer, 256, seed=0)
    precision = resolve_precision("auto", "cpu")
    lora = LoraConfig()

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            processes, _, threads = variant.partition("x")
            processes = int(processes)
            if threads:
                os.environ["OMP_NUM_THREADS"] = threads  # the launcher keeps a value already set
            else:
                os.environ.pop("OMP_NUM_THREADS", None)
            cfg = TrainConfig(
                max_steps=steps, batch_size=args.batch_size, resume=False, eval_rows=0, processes=processes,
            )  # fmt: skip
            folder = Path(tmp) / f"v{variant}"
            job = write_job(folder / "job", TrainJob(model_path, ModelConfig(), lora, cfg, train_records, [], folder, "cpu"))
            started = time.perf_counter()
            result, metrics = run_workers(job, processes, None, "cpu")
            wall = time.perf_counter() - started
            steady = [m for step, m in metrics if "tokens" in m][1:]  # all steps but the first (warm-up)
            runs[variant] = {
                "processes": processes,
                "threads_per_process": int(threads) if threads else max(1, (os.cpu_count() or 1) // processes),
                "wall_seconds": wall,
                "train_seconds": result.train_seconds,
                "tokens_per_s": result.tokens_per_s,
                "steady_tokens_per_s": sum(m["tokens"] for m in steady) / sum(m["step_seconds"] for m in steady),
                "train_loss": result.train_loss,
                "world_size": result.world_size,
                **f1_scores(model_path, result.adapter_dir, eval_frame, tokenizer, folder, precision),
            }
            print(f"{variant}: {wall:.0f} s wall", flush=True)

    base = runs[args.variants[0]]
    print("| processes x threads | wall s | train s | tokens/s (steady) | vs first | train loss | macro-F1 |")
    print("|---|---|---|---|---|---|---|")
    for run in runs.values():
        speedup = run["steady_tokens_per_s"] / base["steady_tokens_per_s"]
        print(
            f"| {run['processes']} x {run['threads_per_process']} | {run['wall_seconds']:.0f} | {run['train_seconds']:.0f} | {run['steady_tokens_per_s']:.0f} "
            f"| {speedup:.2f}x | {run['train_loss']:.3f} | {run['f1_macro']:.3f} |"
        )
    summary = {
        "runs": runs,
        "steps": steps,
        "global_batch": args.batch_size,
        "train_rows": len(train_records),
        "eval_rows": len(eval_frame),
        "precision": precision,
        "cpu_count": os.cpu_count(),
        "torch_threads_in_caller": torch.get_num_threads(),
        "quick": args.quick,
    }
    write_result(args.out, summary)


if __name__ == "__main__":
    main()
