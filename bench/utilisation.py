"""Model FLOPs utilisation (MFU) of LoRA training and prediction against the machine's matmul peak.

In one run, on one device:

* the bf16 (and fp32) matmul peak, measured at the model's own shapes and at a square size;
* training: the product loop (``training.train_examples``) with the default config, its tokens/s
  and the useful FLOPs of every step counted from the model's config (frozen weights: forward
  and input gradient, 4 FLOPs per weight and token; LoRA weights: 6; causal attention; the
  lm_head at answer positions only), so padding counts as lost utilisation;
* where a step's time goes (``torch.profiler`` over three steps): matmuls, attention, norms and
  elementwise work, dtype casts, LoRA dropout, the optimizer, and Python/framework overhead
  (wall time no operator accounts for; on CUDA, the time the GPU waits for launches);
* levers, each the same loop with one change, side by side with the default in this run:
  the old default (LoRA dropout 0.05), no length grouping, a fused AdamW, ``torch.compile``,
  one thread, and larger batches (a recipe change: fewer, bigger steps);
* prediction: ``predict_rows`` (the serving path) rows/s and tokens/s, and its MFU.

The rows are UMSAB's ``configs/umsab_cpu.yaml`` train rows when UMSAB is there, else the sample
data. ``--random-weights CONFIG --lengths FILE`` needs no tokenizer or weights: a model of that
config with random weights and token ids of the given lengths (speed does not depend on the
values) — for a device machine without the embedded model. ``--write-lengths`` saves them.

    python -m bench.utilisation                    # about 10 minutes on 2 cores
    python -m bench.utilisation --quick            # a few steps per variant
    python -m bench.utilisation --random-weights config.json --lengths lengths.json --device cuda \
        --batch-sizes 8 64 512 2048 --out gpu_utilisation.json

Writes ``bench/results/utilisation.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoConfig

from bench.common import REPO, UMSAB, load_rows, machine, real_model_path
from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.config_loading import load_settings
from sentibridge.model import training
from sentibridge.model.batching import Example, answer_tokens, epoch_batches
from sentibridge.model.precision import base_dtype, resolve_precision
from sentibridge.model.training import TrainJob, train_examples

#: Profile buckets, in the order they are printed.
BUCKETS = ("matmul", "attention", "norms_elementwise", "casts", "lora_dropout", "optimizer", "python_overhead")
_MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm", "aten::addmv")
_DROPOUT = ("aten::dropout", "aten::native_dropout", "aten::bernoulli_", "aten::native_dropout_backward", "aten::feature_dropout")
_CASTS = ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone")


# --- FLOPs -----------------------------------------------------------------------------


def model_shape(config) -> dict[str, int]:
    """The numbers the FLOP counts need, from a (text) model config."""
    config = getattr(config, "text_config", config)
    heads, kv_heads = config.num_attention_heads, getattr(config, "num_key_value_heads", config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {
        "layers": config.num_hidden_layers, "hidden": config.hidden_size, "heads": heads, "kv_heads": kv_heads,
        "head_dim": head_dim, "intermediate": config.intermediate_size, "vocab": config.vocab_size,
    }  # fmt: skip


def _linear_shapes(shape: Mapping[str, int]) -> list[tuple[int, int]]:
    """(in, out) of each decoder layer's linear weights: q, k, v, o, gate, up, down."""
    d, q, kv, i = shape["hidden"], shape["heads"] * shape["head_dim"], shape["kv_heads"] * shape["head_dim"], shape["intermediate"]
    return [(d, q), (d, kv), (d, kv), (q, d), (d, i), (d, i), (i, d)]


def linear_params(shape: Mapping[str, int]) -> int:
    """Weights of the decoder layers' linear maps (the frozen base's matmul work)."""
    return shape["layers"] * sum(a * b for a, b in _linear_shapes(shape))


def lora_params(shape: Mapping[str, int], rank: int) -> int:
    """LoRA weights on every decoder linear map (peft's ``all-linear``)."""
    return shape["layers"] * sum(rank * (a + b) for a, b in _linear_shapes(shape))


def attention_flops(shape: Mapping[str, int], length: int) -> float:
    """Forward FLOPs of causal attention (scores and values) over one row of ``length`` tokens."""
    return shape["layers"] * 2.0 * shape["heads"] * shape["head_dim"] * length * (length + 1)


def train_flops(shape: Mapping[str, int], rank: int, example: Example) -> float:
    """Useful FLOPs of one training example: forward and backward, padding excluded.

    Frozen weights do a forward and an input gradient (4 per weight and token); LoRA weights also
    a weight gradient (6); attention's backward is twice its forward; the lm_head runs at answer
    positions only (forward and input gradient).
    """
    length = len(example.input_ids)
    head = 4.0 * shape["vocab"] * shape["hidden"] * answer_tokens(example)
    return (4.0 * linear_params(shape) + 6.0 * lora_params(shape, rank)) * length + 3 * attention_flops(shape, length) + head


def forward_flops(shape: Mapping[str, int], tokens: int, lengths: Sequence[int]) -> float:
    """Forward FLOPs of scoring: ``tokens`` run through the linear maps, attention over each row."""
    return 2.0 * linear_params(shape) * tokens + sum(attention_flops(shape, n) for n in lengths)


def padding_share(lengths: Sequence[int], batch_size: int, group_by_length: bool, seed: int = 42) -> float:
    """Share of an epoch's batch tokens that are padding: all that packing rows into one sequence could save."""
    batches = epoch_batches(lengths, batch_size, seed, 0, group_by_length)
    padded = sum(len(batch) * max(lengths[k] for k in batch) for batch in batches)
    return 1 - sum(lengths) / padded


# --- peak ------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    for _ in range(3):
        fn()
    _sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - started) / repeats


def matmul_peak(dtype: torch.dtype, device: torch.device, shape: Mapping[str, int], tokens: int, square: int) -> dict:
    """GFLOP/s of ``dtype`` matmuls at the model's step shapes and one square size; ``peak`` is the best."""
    shapes = {f"{tokens}x{a}->{b}": (tokens, a, b) for a, b in sorted(set(_linear_shapes(shape)))}
    shapes[f"{square}^2"] = (square, square, square)
    rates = {}
    for name, (m, k, n) in shapes.items():
        x, w = torch.randn(m, k, dtype=dtype, device=device), torch.randn(n, k, dtype=dtype, device=device)
        seconds = _timed(lambda: x @ w.t(), device, repeats=max(5, int(2e11 / (2 * m * k * n))) if device.type == "cpu" else 50)
        rates[name] = 2 * m * k * n / seconds / 1e9
    return {"peak": max(rates.values()), "shapes": rates}


# --- training --------------------------------------------------------------------------


def _load_model(source: Mapping, device: torch.device, precision: str):
    """The real base model, or one with random weights of ``source['config']``."""
    if source.get("config") is not None:
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        with torch.device(device):
            return AutoModelForCausalLM.from_config(source["config"], dtype=base_dtype(precision))
    from sentibridge.model.base import load_causal_lm

    return load_causal_lm(source["path"], ModelConfig(), device, base_dtype(precision))


@contextmanager
def _lever(name: str):
    """Swap one piece of the product loop for a lever's variant while the block runs (bench only)."""
    saved_adamw, saved_loss, threads = torch.optim.AdamW, training.AnswerLoss, torch.get_num_threads()
    if name == "fused_adamw":
        training.torch.optim.AdamW = lambda params, **kw: saved_adamw(params, fused=True, **kw)  # type: ignore[assignment]
    if name == "compile":
        training.AnswerLoss = lambda model: torch.compile(saved_loss(model), dynamic=True)  # type: ignore[assignment]
    if name == "one_thread":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.optim.AdamW, training.AnswerLoss = saved_adamw, saved_loss
        torch.set_num_threads(threads)
        torch._dynamo.reset()


def run_train(
    source: Mapping, examples: Sequence[Example], pad_id: int, cfg: TrainConfig, lora: LoraConfig, device: torch.device,
    shape: Mapping[str, int], lever: str = "default", warmup: int = 2, profile_steps: int = 0,
) -> dict:  # fmt: skip
    """Train ``cfg.max_steps`` steps through the product loop; steady-state tokens/s and FLOP/s after ``warmup``."""
    precision = resolve_precision(cfg.precision, device)
    model = _load_model(source, device, precision)
    lengths, batches, epoch = [len(e.input_ids) for e in examples], [], 0
    while len(batches) < cfg.max_steps:  # the loop's batch stream, over as many epochs as the steps take
        batches += epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)
        epoch += 1
    step_flops = [sum(train_flops(shape, lora.r, examples[k]) for k in batch) for batch in batches]
    seconds, tokens, profiler = [], [], None
    recorded: dict = {}

    def on_log(step: int, metrics: dict) -> None:
        nonlocal profiler
        if "step_seconds" not in metrics:
            return
        seconds.append(metrics["step_seconds"])
        tokens.append(metrics["tokens"])
        if profile_steps and step == warmup:
            profiler = _start_profiler(device)
        if profiler is not None and step == warmup + profile_steps:
            profiler.__exit__(None, None, None)
            recorded.update(attribute(profiler, device, profile_steps))
            recorded["wall_per_step"] = sum(seconds[warmup:]) / profile_steps
            profiler = None

    with _lever(lever), tempfile.TemporaryDirectory() as out:
        job = TrainJob("", ModelConfig(), lora, cfg.model_copy(update={"resume": False, "eval_rows": 0}), [], [], Path(out), device.type)
        try:
            result = train_examples(model, examples, [], pad_id, job, on_log, progress=False)
        finally:
            if profiler is not None:  # the run ended inside the profiled steps
                profiler.__exit__(None, None, None)
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    steady = slice(warmup, None)
    flops = sum(step_flops[: len(seconds)][steady]) / sum(seconds[steady])
    return {
        "lever": lever, "precision": result.precision, "batch_size": cfg.batch_size, "steps": len(seconds),
        "tokens_per_s": sum(tokens[steady]) / sum(seconds[steady]), "gflops": flops / 1e9,
        "first_step_seconds": seconds[0], "steps_per_s": len(seconds[steady]) / sum(seconds[steady]),
        "lora_dropout": lora.dropout, "group_by_length": cfg.group_by_length, "profile": recorded or None,
    }  # fmt: skip


def _start_profiler(device: torch.device):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    profiler = profile(activities=activities)
    profiler.__enter__()
    return profiler


def bucket(name: str, under_optimizer: bool) -> str:
    """The profile bucket of one operator (by name, and whether it ran inside ``Optimizer.step``)."""
    if under_optimizer:
        return "optimizer"
    if name.startswith(_MATMUL) or "gemm" in name.lower() or "mkldnn_linear" in name:
        return "matmul"
    if "attention" in name or "sdpa" in name.lower() or "fmha" in name.lower() or "flash" in name.lower():
        return "attention"
    if name.startswith(_DROPOUT):
        return "lora_dropout"
    if name.startswith(_CASTS):
        return "casts"
    return "norms_elementwise"


def attribute(profiler, device: torch.device, steps: int) -> dict:
    """Seconds per step of each operator bucket: operators' self time (CPU) or kernel time (CUDA)."""
    totals = dict.fromkeys(BUCKETS[:-1], 0.0)
    kernels = 0
    for event in profiler.events():
        parent, under_optimizer = event.cpu_parent, False
        while parent is not None and not under_optimizer:
            under_optimizer = parent.name.startswith("Optimizer.")
            parent = parent.cpu_parent
        if device.type == "cuda":
            for kernel in event.kernels:
                totals[bucket(event.name, under_optimizer)] += kernel.duration / 1e6
                kernels += 1
        elif event.name.startswith("aten::"):
            totals[bucket(event.name, under_optimizer)] += event.self_cpu_time_total / 1e6
    return {"seconds_per_step": {k: v / steps for k, v in totals.items()}, "kernels_per_step": kernels / steps if kernels else None}


def step_profile(buckets: Mapping, step_seconds: float) -> dict:
    """``attribute``'s buckets against the wall time of the steps they were recorded in.

    The wall time no operator accounts for is ``python_overhead``: Python, autograd and dispatch
    on CPU; on CUDA, the time the GPU sits idle waiting for the host to launch work.
    """
    per_step = dict(buckets["seconds_per_step"])
    per_step["python_overhead"] = max(0.0, step_seconds - sum(per_step.values()))
    return {"step_seconds": step_seconds, "seconds_per_step": per_step, "share": {k: v / step_seconds for k, v in per_step.items()},
            "kernels_per_step": buckets["kernels_per_step"]}  # fmt: skip


# --- prediction ------------------------------------------------------------------------


def run_predict(source: Mapping, rows, examples: Sequence[Example], pad_id: int, batch_size: int, device: torch.device, shape: Mapping[str, int]) -> dict:
    """Rows/s, tokens/s and FLOP/s of scoring: ``predict_rows`` on real rows, else a forward harness.

    Tokens are those the decoder actually runs (counted by a hook, so the prefix the scorer
    shares per instruction group counts once).
    """
    from sentibridge.model.base import decoder_and_head

    precision = resolve_precision("auto", device)
    model = _load_model(source, device, precision)
    body, _ = decoder_and_head(model)
    counted = [0]
    hook = body.register_forward_pre_hook(lambda module, args, kwargs: counted.__setitem__(0, counted[0] + _tokens(kwargs)), with_kwargs=True)
    started = time.perf_counter()
    if rows is not None:
        from sentibridge.inference.predict import predict_rows

        predict_rows(model, source["tokenizer"], rows, 256, batch_size, device, precision, progress=False)
        # Attention, about 1% of the FLOPs, is counted at the train prompts' lengths.
        n_rows, lengths = len(rows), [e.prompt_len for e in examples[: len(rows)]]
    else:
        n_rows, lengths = _forward_harness(model, examples, pad_id, batch_size, device, precision)
    _sync(device)
    seconds = time.perf_counter() - started
    hook.remove()
    del model
    gc.collect()
    flops = forward_flops(shape, counted[0], lengths)
    return {"rows": n_rows, "batch_size": batch_size, "rows_per_s": n_rows / seconds, "tokens_per_s": counted[0] / seconds,
            "gflops": flops / seconds / 1e9, "path": "predict_rows" if rows is not None else "forward harness"}  # fmt: skip


def _tokens(kwargs: Mapping) -> int:
    mask = kwargs.get("attention_mask")
    ids = kwargs.get("input_ids")
    if ids is None:
        return 0
    return int(ids.numel()) if mask is None or mask.shape != ids.shape else int(mask.sum())


@torch.no_grad()
def _forward_harness(model, examples: Sequence[Example], pad_id: int, batch_size: int, device: torch.device, precision: str) -> tuple[int, list[int]]:
    """Score each example's prompt as the scorer does for one-token labels: body forward, head on 3 rows at the last position."""
    from sentibridge.model.base import decoder_and_head, head_logits
    from sentibridge.model.batching import collate
    from sentibridge.model.precision import autocast

    body, _ = decoder_and_head(model)
    model.eval()
    prompts = [Example(e.input_ids[: e.prompt_len], e.prompt_len) for e in examples]
    prompts.sort(key=lambda e: len(e.input_ids))
    for start in range(0, len(prompts), batch_size):
        batch = {k: v.to(device) for k, v in collate(prompts[start : start + batch_size], pad_id).items()}
        with autocast(precision, device):
            hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).last_hidden_state
            last = batch["attention_mask"].sum(1) - 1
            head_logits(model, hidden[torch.arange(len(last), device=device), last], token_ids=[0, 1, 2])
    return len(prompts), [len(e.input_ids) for e in prompts]


# --- inputs ----------------------------------------------------------------------------


def real_inputs(quick: bool) -> tuple[dict, list[Example], int, object]:
    """(source, train examples, pad id, test rows) from UMSAB's umsab_cpu split, else the sample data."""
    from sentibridge.data.ingest import read_dataset
    from sentibridge.data.split import split_rows, subsample_per_language
    from sentibridge.model.base import load_tokenizer
    from sentibridge.model.batching import encode_records
    from sentibridge.model.instructions import build_records

    path = real_model_path()
    tokenizer = load_tokenizer(path, ModelConfig())
    if UMSAB.is_dir():
        settings = load_settings(REPO / "configs" / "umsab_cpu.yaml", [f"data.path={UMSAB}"])
        split = split_rows(read_dataset(settings.data.path), settings.split, settings.data)
        train, test, data = split.train, subsample_per_language(split.test, 16 if quick else 64, 0), "umsab (configs/umsab_cpu.yaml)"
    else:
        rows = load_rows(400)
        train, test, data = rows.iloc[:300], rows.iloc[300:], "data/sample"
    records = build_records(train, tokenizer, 256, seed=0)
    source = {"path": path, "tokenizer": tokenizer, "data": data}
    return source, encode_records(records, tokenizer), tokenizer.pad_token_id, test.reset_index(drop=True)


def random_inputs(config_file: Path, lengths_file: Path) -> tuple[dict, list[Example], int, None]:
    """(source, examples of random token ids with the saved lengths, pad id 0, no rows)."""
    config = AutoConfig.from_pretrained(config_file.parent if config_file.name == "config.json" else config_file)
    generator = torch.Generator().manual_seed(0)
    pairs = json.loads(lengths_file.read_text(encoding="utf-8"))
    vocab = getattr(config, "text_config", config).vocab_size
    examples = [Example(torch.randint(3, vocab, (n,), generator=generator).tolist(), p) for n, p in pairs]
    return {"config": config, "data": f"random ids, lengths of {lengths_file.name}"}, examples, 0, None


# --- report ----------------------------------------------------------------------------


def _machine(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    return {"device": "cpu", "torch": torch.__version__, "torch_threads": torch.get_num_threads(), **machine()}


def print_report(summary: Mapping) -> None:
    peak = summary["peak_gflops_bf16"] if summary["precision"] == "bf16" else summary["peak_gflops_fp32"]
    print(f"\nmatmul peak ({summary['precision']}): {peak:.0f} GFLOP/s; train FLOPs/token {summary['train_flops_per_token'] / 1e9:.2f} G")
    print("| lever | batch | tokens/s | GFLOP/s | MFU | vs default |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in summary["levers"]:
        print(f"| {row['lever']} | {row['batch_size']} | {row['tokens_per_s']:.0f} | {row['gflops']:.0f} | {row['mfu']:.1%} | {row['vs_default']:.2f}x |")
    padding = summary["padding_share"]
    print(f"\npadding at batch 8: {padding['length_grouped']:.1%} of batch tokens length-grouped, {padding['shuffled']:.1%} shuffled")
    print(f"predict: {summary['predict']['rows_per_s']:.1f} rows/s, {summary['predict']['tokens_per_s']:.0f} tokens/s, MFU {summary['predict_mfu']:.1%}")
    profile = summary["train_profile"]
    if profile:
        print("\nwhere a default training step's time goes:")
        print("| part | ms/step | share |")
        print("|---|---:|---:|")
        for name in BUCKETS:
            print(f"| {name} | {1000 * profile['seconds_per_step'][name]:.0f} | {profile['share'][name]:.0%} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps per variant (a smoke run)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps per variant")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[16, 32], help="larger batches to measure besides 8")
    parser.add_argument("--levers", nargs="*", default=["before_dropout_0.05", "no_length_grouping", "fused_adamw", "compile", "one_thread"])
    parser.add_argument("--random-weights", type=Path, default=None, metavar="CONFIG", help="a model config.json: random weights, no tokenizer")
    parser.add_argument("--lengths", type=Path, default=None, help="with --random-weights: [[length, prompt_len], ...]")
    parser.add_argument("--write-lengths", type=Path, default=None, help="save the real examples' lengths for --lengths")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "utilisation.json")
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    steps = args.steps or (6 if args.quick else 20)
    if args.random_weights:
        source, examples, pad_id, rows = random_inputs(args.random_weights, args.lengths)
    else:
        source, examples, pad_id, rows = real_inputs(args.quick)
    if args.write_lengths:
        args.write_lengths.write_text(json.dumps([[len(e.input_ids), e.prompt_len] for e in examples]), encoding="utf-8")
    config = source.get("config") or AutoConfig.from_pretrained(source["path"])
    shape = model_shape(config)
    lora = LoraConfig()
    default = TrainConfig(max_steps=steps, seed=42)
    precision = resolve_precision(default.precision, device)
    tokens = 8 * round(sum(len(e.input_ids) for e in examples) / len(examples))
    square = 8192 if device.type == "cuda" else 2048
    peaks = {name: matmul_peak(dtype, device, shape, tokens, square) for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    peak = peaks[precision]["peak"]
    print(f"{source['data']}: {len(examples)} examples, device {device}, {precision}; peaks bf16 {peaks['bf16']['peak']:.0f}, fp32 {peaks['fp32']['peak']:.0f} GFLOP/s", flush=True)

    def measure(lever: str, cfg: TrainConfig, lora_cfg: LoraConfig = lora, profile_steps: int = 0) -> dict:
        row = run_train(source, examples, pad_id, cfg, lora_cfg, device, shape, lever, profile_steps=profile_steps)
        row["mfu"] = row["gflops"] / peak
        print(f"  {lever} (batch {cfg.batch_size}): {row['tokens_per_s']:.0f} tokens/s, {row['gflops']:.0f} GFLOP/s, MFU {row['mfu']:.1%}", flush=True)
        return row

    if device.type == "cuda":  # a throwaway pass: a process's first steps pay for kernel selection at every new shape
        run_train(source, examples, pad_id, default, lora, device, shape)
    rows_out = [measure("default", default)]
    # Profiled apart, so the profiler's own cost stays out of the rates; the buckets are shares of
    # the profiled steps' wall time (on CUDA the profiler slows those steps several times over).
    profiled = run_train(source, examples, pad_id, default.model_copy(update={"max_steps": 6}), lora, device, shape, profile_steps=3)
    train_profile = step_profile(profiled["profile"], profiled["profile"]["wall_per_step"])
    train_profile["unprofiled_step_seconds"] = 1 / rows_out[0]["steps_per_s"]
    variants = {
        "before_dropout_0.05": (default, lora.model_copy(update={"dropout": 0.05})),
        "no_length_grouping": (default.model_copy(update={"group_by_length": False}), lora),
        "fused_adamw": (default, lora),
        "compile": (default.model_copy(update={"max_steps": steps + 10}), lora),
        "one_thread": (default, lora),
    }
    for lever in args.levers:
        if lever == "one_thread" and device.type != "cpu":
            continue
        cfg, lora_cfg = variants[lever]
        try:
            rows_out.append(measure(lever, cfg, lora_cfg))
        except Exception as exc:  # noqa: BLE001 - a lever that fails here is reported, not fatal
            print(f"  {lever}: failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", flush=True)
            rows_out.append({"lever": lever, "error": f"{type(exc).__name__}: {exc}"[:300]})
    out_of_memory = None
    for size in args.batch_sizes:
        try:
            rows_out.append(measure(f"batch_{size}", default.model_copy(update={"batch_size": size, "max_steps": max(4, steps // 2)})))
        except torch.OutOfMemoryError:
            print(f"  batch {size}: out of memory", flush=True)
            out_of_memory = size
            break
    base = rows_out[0]["tokens_per_s"]
    levers = [{**r, "vs_default": r["tokens_per_s"] / base} for r in rows_out if "tokens_per_s" in r]
    predict = run_predict(source, rows, examples[:512], pad_id, 16, device, shape)
    flops_per_token = sum(train_flops(shape, lora.r, e) for e in examples) / sum(len(e.input_ids) for e in examples)
    summary = {
        "units": "GFLOP/s = 1e9 useful FLOP per second; mfu = GFLOP/s / the peak of the run's precision, measured in this run",
        "peak_gflops_bf16": peaks["bf16"]["peak"], "peak_gflops_fp32": peaks["fp32"]["peak"], "peaks": peaks,
        "precision": precision, "train_mfu": rows_out[0]["mfu"], "train_tokens_per_s": base,
        "train_mfu_before": next((r["mfu"] for r in levers if r["lever"] == "before_dropout_0.05"), None),
        "train_flops_per_token": flops_per_token, "model_shape": shape, "linear_params": linear_params(shape),
        "lora_params": lora_params(shape, lora.r), "predict": predict, "predict_mfu": predict["gflops"] / peak,
        "levers": levers, "failed_levers": [r for r in rows_out if "error" in r], "train_profile": train_profile,
        "largest_batch": max(r["batch_size"] for r in levers), "out_of_memory_batch": out_of_memory,
        "padding_share": {grouped: padding_share([len(e.input_ids) for e in examples], 8, grouped == "length_grouped")
                          for grouped in ("length_grouped", "shuffled")},
        "steps_per_variant": steps, "data": source["data"], "quick": args.quick, "python": platform.python_version(),
        **_machine(device),
    }  # fmt: skip
    print_report(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
