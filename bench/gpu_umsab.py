"""UMSAB on one GPU: the training pipeline's domain calls, timed, without ZenML or MLflow.

The prepared device check of issue 3: read and split the data, build instruction records,
train the LoRA adapter, merge it in bf16, score the test split and report per-language
macro-F1 and tokens/s. These are the functions the pipeline's steps call, in the same order
and with the same config; the steps add only artifact tracking, which is left out because a
device machine has a bare Python (no ZenML store, no MLflow server). Great Expectations
validation is skipped when GE is not installed; UMSAB passes it whole (0 rows quarantined).

Runs on CPU too (slowly): ``--set data.max_rows_per_language=20 --set
eval.max_rows_per_language=20`` makes a smoke test.

    python -m bench.gpu_umsab --config configs/umsab_cpu.yaml --set data.max_rows_per_language=null
"""

from __future__ import annotations

import argparse
import importlib.metadata
import tempfile
import time
from pathlib import Path

import torch

from bench.common import write_result
from sentibridge.model.base import load_causal_lm, load_tokenizer, resolve_base_model
from sentibridge.config_loading import load_settings
from sentibridge.inference.evaluation import evaluate_predictions, results_table
from sentibridge.home import resolve_home
from sentibridge.data.ingest import read_dataset
from sentibridge.model.instructions import build_records
from sentibridge.model.merge import merge_adapter
from sentibridge.model.precision import base_dtype, default_device, resolve_precision
from sentibridge.inference.predict import predict_rows
from sentibridge.data.split import split_rows, subsample_per_language
from sentibridge.model.training import TrainJob, train_lora

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "tokenizers")


def _validated(rows, data_cfg):
    """GE validation when GE is installed (as in the pipeline), else the rows as read."""
    try:
        from sentibridge.data.validation import validate_rows

        result = validate_rows(rows, data_cfg)
    except ImportError:
        return rows, None
    return result.valid, result.rows_quarantined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/umsab_cpu.yaml")
    parser.add_argument("--data", default=None, help="overrides data.path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu_umsab.json"))
    args = parser.parse_args()
    overrides = list(args.overrides) + ([f"data.path={args.data}"] if args.data else [])
    settings = load_settings(args.config, overrides)
    device = default_device()
    precision = resolve_precision(settings.train.precision, device)
    eval_precision = resolve_precision(settings.eval.precision, device)
    started = time.perf_counter()

    rows, quarantined = _validated(read_dataset(settings.data.path), settings.data)
    split = split_rows(rows, settings.split, settings.data)
    base = resolve_base_model(settings.model, resolve_home().embedded_model)
    tokenizer = load_tokenizer(base, settings.model)
    train_records = build_records(split.train, tokenizer, settings.model.max_length, settings.instructions.seed)
    val_records = build_records(split.val, tokenizer, settings.model.max_length, settings.instructions.seed)
    print(f"device {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}), {precision}; "
          f"{len(train_records)} train records, {len(split.test)} test rows", flush=True)

    model = load_causal_lm(base, settings.model, device, base_dtype(precision))
    with tempfile.TemporaryDirectory(prefix="sentibridge-gpu-") as scratch:
        job = TrainJob(base, settings.model, settings.lora, settings.train, train_records, val_records, Path(scratch) / "run", device.type)
        result = train_lora(model, tokenizer, job)
        del model
        merged = merge_adapter(base, result.adapter_dir, Path(scratch) / "merged", settings.model, dtype=torch.bfloat16)
        model = load_causal_lm(str(merged), settings.model, device, base_dtype(eval_precision))
        test = subsample_per_language(split.test, settings.eval.max_rows_per_language, settings.split.seed)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        predictions = predict_rows(
            model, tokenizer, test, settings.model.max_length, settings.eval.batch_size, device, eval_precision
        )
        eval_seconds = time.perf_counter() - t0
    report = evaluate_predictions(predictions["language"], predictions["label"], predictions["pred"])
    print(results_table(report, fmt="markdown"))

    summary = {
        "per_language": {row.language: row.f1_macro for row in report.table.itertuples(index=False)},
        "f1_macro_avg": report.metrics["f1_macro_avg"],
        "tokens_per_s": result.tokens_per_s,
        "train_seconds": result.train_seconds,
        "train_steps": result.steps,
        "train_loss": result.train_loss,
        "eval_loss": result.eval_loss,
        "eval_rows": len(test),
        "eval_rows_per_s": len(test) / eval_seconds,
        "total_seconds": time.perf_counter() - started,
        "train_records": len(train_records),
        "quarantined": quarantined,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "precision": precision,
        "eval_precision": eval_precision,
        "overrides": overrides,
        "config": args.config,
        "versions": {name: importlib.metadata.version(name) for name in LIBRARIES},
    }
    print(
        f"train: {result.steps} steps, {result.tokens_per_s:.0f} tokens/s, {result.train_seconds:.0f} s; "
        f"eval: {summary['eval_rows_per_s']:.0f} rows/s; mean macro-F1 {summary['f1_macro_avg']:.3f}; "
        f"total {summary['total_seconds']:.0f} s"
    )
    write_result(args.out, summary)


if __name__ == "__main__":
    main()
