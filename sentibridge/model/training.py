"""LoRA supervised fine-tuning with a loss on the answer tokens only.

Why a custom loop rather than ``transformers.Trainer``: Gemma's 262k-word vocabulary makes the
lm_head the biggest cost of a step when logits are computed at every position (a batch of
8 x 100 tokens produces 800 x 262,144 fp32 logits, ~840 MB, plus their softmax and gradient).
The loss needs logits only where the answer is predicted, so the decoder body runs on the
whole sequence and the head only on those few positions. Together with bf16 autocast and
length-grouped batches this is several times faster on CPU.

Checkpoints hold the adapter, optimizer, scheduler, RNG state and step, and a resumed run
gives the same adapter as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from sentibridge.model.base import decoder_and_head, head_logits
from sentibridge.config import LoraConfig, TrainConfig
from sentibridge.model.instructions import encode_example
from sentibridge.model.precision import Precision, autocast, default_device, resolve_precision

OnLog = Callable[[int, dict[str, float]], None]

IGNORE_INDEX = -100
_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


@dataclass(frozen=True)
class Example:
    """One tokenized record: prompt + answer ids; the loss covers ids from ``prompt_len`` on."""

    input_ids: list[int]
    prompt_len: int


@dataclass
class TrainResult:
    """What a training run produced."""

    adapter_dir: Path
    steps: int
    train_loss: float
    eval_loss: float | None
    tokens_per_s: float
    train_seconds: float
    precision: Precision
    resumed_from: int = 0


# --- data ------------------------------------------------------------------------------


def encode_records(records: Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase) -> list[Example]:
    """Tokenize records with the shared prompt format (``instructions.encode_example``)."""
    return [Example(*encode_example(tokenizer, record)) for record in records]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; ``labels`` are the input ids with prompt and padding set to -100."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        ids = torch.tensor(example.input_ids, dtype=torch.long)
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        labels[row, example.prompt_len : len(ids)] = ids[example.prompt_len :]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """Batches of example indices for one epoch, a pure function of (seed, epoch).

    Being pure is what lets a resumed run pick up mid-epoch on exactly the same batches.
    With ``group_by_length`` examples are sorted by length inside shuffled mega-batches of
    50 batches (as transformers' LengthGroupedSampler does), so rows of a batch pad little;
    the batches are then shuffled, with the longest first so memory problems show up at once.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    mega = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda k: -lengths[k])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    longest = max(range(len(batches)), key=lambda b: max(lengths[k] for k in batches[b]))
    batches.insert(0, batches.pop(longest))
    return batches


# --- loss ------------------------------------------------------------------------------


def answer_loss_sum(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over answer tokens, and their count.

    Logits only at answer positions: the body gives hidden states, the positions whose next
    token is an answer token are gathered, and the lm_head (262k rows for Gemma) runs on those
    alone. Equal to the full-logits loss with prompt and padding targets set to -100.
    """
    body, _ = decoder_and_head(model)
    hidden = body(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    logits = head_logits(model, hidden[:, :-1][mask])
    loss = F.cross_entropy(logits, targets[mask], reduction="sum")
    return loss, int(mask.sum())


# --- model -----------------------------------------------------------------------------


def add_lora(model: PreTrainedModel, cfg: LoraConfig) -> PeftModel:
    """Wrap ``model`` with a fresh LoRA adapter for causal LM training (seed the RNG first)."""
    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


@torch.inference_mode()
def evaluate_loss(
    model: torch.nn.Module,
    examples: Sequence[Example],
    batch_size: int,
    pad_id: int,
    precision: Precision,
    device: str | torch.device,
) -> float:
    """Mean answer-token cross-entropy over ``examples`` (dropout off)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(examples)), key=lambda k: len(examples[k].input_ids))
    for start in range(0, len(order), batch_size):
        batch = collate([examples[k] for k in order[start : start + batch_size]], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(precision, device):
            loss, n = answer_loss_sum(model, batch)
        total += float(loss)
        count += n
    model.train(was_training)
    return total / max(count, 1)


# --- checkpoints -----------------------------------------------------------------------


def _checkpoint_dirs(output_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in Path(output_dir).glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        if suffix.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(suffix), path))
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The finished checkpoint with the highest step in ``output_dir``, if any."""
    found = _checkpoint_dirs(output_dir)
    return found[-1][1] if found else None


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def _set_rng_state(state: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = [state[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in state]
    if cuda and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    output_dir: Path,
    step: int,
    model: PeftModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: Mapping[str, Any],
) -> Path:
    """Write ``output_dir/checkpoint-<step>`` atomically (temp folder, then rename)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"checkpoint-{step}"
    tmp = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".checkpoint-{step}.tmp-"))
    model.save_pretrained(tmp)  # adapter_model.safetensors + adapter_config.json
    # Optimizer/scheduler/RNG states are ours and hold only tensors and plain values, so they
    # round-trip through torch.save and torch.load(weights_only=True).
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(_rng_state(), tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=1), encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def load_checkpoint(
    checkpoint: Path, model: PeftModel, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore adapter, optimizer, scheduler and RNG from ``checkpoint``; return its trainer state."""
    weights = load_file(checkpoint / "adapter_model.safetensors")
    set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    _set_rng_state(torch.load(checkpoint / "rng.pt", weights_only=True))
    return json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))


# --- training --------------------------------------------------------------------------


def total_steps(n_batches: int, cfg: TrainConfig) -> int:
    """Optimiser steps of the run: ``max_steps`` when positive, else epochs over the batches."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * n_batches / cfg.gradient_accumulation_steps))


def train_lora(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_records: Sequence[Mapping[str, Any]],
    val_records: Sequence[Mapping[str, Any]],
    lora_cfg: LoraConfig,
    train_cfg: TrainConfig,
    output_dir: Path,
    on_log: OnLog | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a LoRA adapter on ``train_records``; the adapter lands in ``output_dir/adapter``.

    ``model`` is the base causal LM; load it in ``base_dtype(resolve_precision(...))`` to avoid
    per-step weight casts (an fp32 run upcasts a bf16 model). The model is wrapped with peft in
    place. Micro-batches form one endless stream over epochs, and optimiser step ``k`` consumes
    micro-batches ``k*GA .. k*GA+GA-1``; with epoch batches a pure function of the seed this
    makes resuming exact. ``on_log(step, metrics)`` gets loss, learning_rate and tokens_per_s
    after every step, and eval_loss at the end.
    """
    if not train_records:
        raise ValueError("train_lora needs at least one training record")
    device = torch.device(device) if device is not None else default_device()
    precision = resolve_precision(train_cfg.precision, device)
    output_dir = Path(output_dir)
    log = on_log or (lambda step, metrics: None)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    set_seed(train_cfg.seed)
    if precision == "fp32" and model.dtype != torch.float32:
        model = model.float()
    model.to(device)
    peft_model = add_lora(model, lora_cfg)
    peft_model.train()

    examples = encode_records(train_records, tokenizer)
    eval_examples = encode_records(list(val_records)[: train_cfg.eval_rows], tokenizer)
    lengths = [len(e.input_ids) for e in examples]
    n_batches = math.ceil(len(examples) / train_cfg.batch_size)
    steps = total_steps(n_batches, train_cfg)
    accum = train_cfg.gradient_accumulation_steps

    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay)
    scheduler = get_scheduler(
        _SCHEDULERS[train_cfg.lr_scheduler],
        optimizer,
        num_warmup_steps=math.ceil(train_cfg.warmup_ratio * steps),
        num_training_steps=steps,
    )

    start_step, losses = 0, []
    checkpoint = latest_checkpoint(output_dir) if train_cfg.resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, peft_model, optimizer, scheduler)
        start_step, losses = int(state["step"]), list(state["losses"])

    cache: dict[int, list[list[int]]] = {}

    def micro_batch(index: int) -> list[int]:
        epoch, offset = divmod(index, n_batches)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_batches(lengths, train_cfg.batch_size, train_cfg.seed, epoch, train_cfg.group_by_length)
        return cache[epoch][offset]

    bar = tqdm(total=steps, initial=start_step, desc="train", disable=not progress, dynamic_ncols=True)
    tokens_seen, started = 0, time.perf_counter()
    for step in range(start_step, steps):
        step_started = time.perf_counter()
        window = [collate([examples[k] for k in micro_batch(step * accum + i)], pad_id) for i in range(accum)]
        # Normalise by the answer tokens of the whole accumulation window, so GA x B equals one
        # batch of GA*B rows.
        window_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in window)
        step_loss = 0.0
        step_tokens = 0
        for batch in window:
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(precision, device):
                loss_sum, _ = answer_loss_sum(peft_model, batch)
            (loss_sum / window_tokens).backward()
            step_loss += float(loss_sum.detach())
            step_tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(params, train_cfg.max_grad_norm)
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        seconds = time.perf_counter() - step_started
        tokens_seen += step_tokens
        loss_value = step_loss / max(window_tokens, 1)
        losses.append(loss_value)
        done = step + 1
        if done == steps or (train_cfg.checkpoint_every and done % train_cfg.checkpoint_every == 0):
            save_checkpoint(output_dir, done, peft_model, optimizer, scheduler, {"losses": losses})
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        log(
            done,
            {
                "loss": loss_value,
                "learning_rate": learning_rate,
                "tokens_per_s": step_tokens / seconds,
                "tokens": float(step_tokens),
                "step_seconds": seconds,
                "epoch": (done * accum) / n_batches,
            },
        )
    bar.close()
    train_seconds = time.perf_counter() - started

    eval_loss = None
    if eval_examples:
        eval_loss = evaluate_loss(peft_model, eval_examples, train_cfg.batch_size, pad_id, precision, device)
        log(steps, {"eval_loss": eval_loss})

    adapter_dir = output_dir / "adapter"
    peft_model.save_pretrained(adapter_dir)
    return TrainResult(
        adapter_dir=adapter_dir,
        steps=steps,
        train_loss=sum(losses) / max(len(losses), 1),
        eval_loss=eval_loss,
        tokens_per_s=tokens_seen / train_seconds if train_seconds > 0 and tokens_seen else 0.0,
        train_seconds=train_seconds,
        precision=precision,
        resumed_from=start_step,
    )
