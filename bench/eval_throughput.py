"""Evaluation throughput: label-word scoring against decoding with ``generate()``.

Same model, rows, prompts and batch size, in one run:

* scoring (``sentibridge.inference.scoring``): one forward pass per batch, argmax over the label words;
* batched ``generate()`` (greedy, ``max_new_tokens=8``), answer parsed from the text;
* ``generate()`` one row at a time.

The model is the real Gemma-3-270M, by default as-is (not fine-tuned: it is a base model, so
generation often answers with something other than a label); ``--train-steps N`` first
fine-tunes a LoRA adapter for N steps on other rows with ``sentibridge.model.training``. A second
scoring pass in fp32 shows whether bf16 changes F1.

    python -m bench.eval_throughput --quick
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from bench.common import load_rows, real_model_path, write_result
from sentibridge.model.base import load_causal_lm, load_tokenizer
from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.model.instructions import LABEL_WORDS, SERVING_TEMPLATE, build_records, format_prompt
from sentibridge.model.precision import autocast, base_dtype, default_device, resolve_precision
from sentibridge.inference.scoring import score_records
from sentibridge.model.merge import merge_adapter
from sentibridge.model.training import TrainJob, train_lora

_WORD = re.compile("|".join(LABEL_WORDS))


def parse_answer(text: str) -> int:
    """First label word in the generated text; -1 (always wrong) when there is none."""
    match = _WORD.search(text.lower())
    return LABEL_WORDS.index(match.group(0)) if match else -1


@torch.inference_mode()
def generate_labels(model, tokenizer, prompts: list[str], batch_size: int, precision, device) -> list[int]:
    """Greedy decoding, left-padded batches (what generate() needs), answers parsed."""
    tokenizer.padding_side = "left"
    preds = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        enc = tokenizer(chunk, add_special_tokens=False, padding=True, return_tensors="pt").to(device)
        with autocast(precision, device):
            out = model.generate(
                **enc, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        preds.extend(parse_answer(t) for t in texts)
    return preds


def macro_f1(y_true, y_pred) -> float:
    return float(f1_score(y_true, y_pred, labels=[0, 1, 2], average="macro", zero_division=0))


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rows (a few minutes on 2 cores)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=0, help="fine-tune a LoRA adapter first (0: base model)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("bench/results/eval_throughput.json"))
    args = parser.parse_args()
    rows = args.rows or (144 if args.quick else 432)

    torch.manual_seed(0)
    device = default_device()
    precision = resolve_precision("auto", device)
    model_path = real_model_path()
    tokenizer = load_tokenizer(model_path, ModelConfig())
    frame = load_rows(rows + (args.train_steps * 8 if args.train_steps else 0), seed=1)
    eval_frame, train_frame = frame.head(rows), frame.iloc[rows:]
    records = build_records(eval_frame, tokenizer, args.max_length, seed=0, template=SERVING_TEMPLATE)
    y_true = eval_frame["label"].to_numpy()
    prompts = [format_prompt(tokenizer, r) for r in records]

    model = load_causal_lm(model_path, ModelConfig(), device, base_dtype(precision))
    adapter_note = "base model as-is"
    if args.train_steps:
        train_records = build_records(train_frame, tokenizer, args.max_length, seed=0)
        cfg = TrainConfig(max_steps=args.train_steps, batch_size=8, resume=False, eval_rows=0, precision=precision)
        # Evaluate what the pipeline evaluates: the adapter merged in bf16 and loaded afresh. A
        # model that peft has wrapped (even after merge_and_unload) decodes ~20x slower in
        # generate() with transformers 5.24 here, which would flatter scoring unfairly.
        with tempfile.TemporaryDirectory() as out:
            job = TrainJob(model_path, ModelConfig(), LoraConfig(), cfg, train_records, [], Path(out), device.type)
            result = train_lora(model, tokenizer, job)
            del model
            merged = merge_adapter(model_path, result.adapter_dir, Path(out) / "merged", ModelConfig())
            model = load_causal_lm(str(merged), ModelConfig(), device, base_dtype(precision))
        adapter_note = f"LoRA fine-tuned {args.train_steps} steps x 8 rows ({precision}), merged in bf16, reloaded"

    # Warm-up (kernel selection, allocator) outside the timings, for every method alike.
    warm = slice(0, args.batch_size)
    score_records(model, tokenizer, records[warm], args.batch_size, device, precision, progress=False)
    generate_labels(model, tokenizer, prompts[warm], args.batch_size, precision, device)

    scored, t_score = timed(lambda: score_records(model, tokenizer, records, args.batch_size, device, precision, progress=False))
    gen_batched, t_batched = timed(lambda: generate_labels(model, tokenizer, prompts, args.batch_size, precision, device))
    gen_single, t_single = timed(lambda: generate_labels(model, tokenizer, prompts, 1, precision, device))

    fp32_check = None
    if precision == "bf16":
        fp32_model = model.float()
        scored32 = score_records(fp32_model, tokenizer, records, args.batch_size, device, "fp32", progress=False)
        fp32_check = {
            "f1_scoring_fp32": macro_f1(y_true, scored32.preds),
            "f1_scoring_bf16": macro_f1(y_true, scored.preds),
            "prediction_agreement": float(np.mean(scored32.preds == scored.preds)),
        }

    summary = {
        "speedup": t_batched / t_score,
        "speedup_vs_single": t_single / t_score,
        "f1_scoring": macro_f1(y_true, scored.preds),
        "f1_generate": macro_f1(y_true, gen_batched),
        "f1_generate_single": macro_f1(y_true, gen_single),
        "generate_unparsed_fraction": float(np.mean(np.array(gen_batched) == -1)),
        "rows_per_s": {"scoring": rows / t_score, "generate_batched": rows / t_batched, "generate_single": rows / t_single},
        "seconds": {"scoring": t_score, "generate_batched": t_batched, "generate_single": t_single},
        "rows": rows,
        "batch_size": args.batch_size,
        "precision": precision,
        "model": adapter_note,
        "bf16_check": fp32_check,
        "quick": args.quick,
    }
    print("| method | rows/s | seconds | macro-F1 |")
    print("|---|---|---|---|")
    print(f"| scoring | {rows / t_score:.2f} | {t_score:.1f} | {summary['f1_scoring']:.3f} |")
    print(f"| generate (batch {args.batch_size}) | {rows / t_batched:.2f} | {t_batched:.1f} | {summary['f1_generate']:.3f} |")
    print(f"| generate (one by one) | {rows / t_single:.2f} | {t_single:.1f} | {summary['f1_generate_single']:.3f} |")
    print(f"speedup vs batched generate: {summary['speedup']:.2f}x; vs one by one: {summary['speedup_vs_single']:.2f}x")
    if fp32_check:
        print(f"bf16 check: {fp32_check}")
    write_result(args.out, summary)


if __name__ == "__main__":
    main()
