"""LoRA supervised fine-tuning with a loss on the answer tokens only.

Why a custom loop rather than ``transformers.Trainer``: Gemma's 262k-word vocabulary makes the
lm_head the biggest cost of a step when logits are computed at every position (a batch of
8 x 100 tokens produces 800 x 262,144 fp32 logits, ~840 MB, plus their softmax and gradient).
The loss needs logits only where the answer is predicted, so the decoder body runs on the
whole sequence and the head only on those few positions. Together with bf16 autocast and
length-grouped batches this is several times faster on CPU.

The loop runs on ``accelerate.Accelerator``, so the same code trains in one process or in N
data-parallel workers (``sentibridge.model.launch``): every micro-batch is split row-wise across
the ranks, and the loss is normalised by the answer tokens of the whole global window, so N
processes compute the gradient of one process with the same global batch.

Checkpoints are ``Accelerator.save_state`` folders (optimizer, scheduler, every rank's RNG
states; under FSDP and DeepSpeed their sharded states) plus the adapter and the step, so a
resumed run, sharded or not, gives the same adapter as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from peft.utils.other import fsdp_auto_wrap_policy
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.model.base import decoder_and_head, head_logits
from sentibridge.model.batching import (
    IGNORE_INDEX,
    Example,
    answer_tokens,
    encode_records,
    epoch_batches,
    shard_batch,
)
from sentibridge.model.checkpoints import Progress, keep_adapter_only, latest_checkpoint, load_checkpoint, save_checkpoint
from sentibridge.model.precision import Precision, autocast, resolve_precision

OnLog = Callable[[int, dict[str, float]], None]

_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


@dataclass(frozen=True)
class TrainJob:
    """One training run's inputs: what the step hands the loop, or the launcher each worker.

    ``base`` is the base model's folder or hub id (workers load it; in-process callers pass the
    loaded model and may leave it empty); ``device`` is ``cpu``, ``cuda`` or None (CUDA when available).
    """

    base: str
    model: ModelConfig
    lora: LoraConfig
    train: TrainConfig
    train_records: Sequence[Mapping[str, Any]]
    val_records: Sequence[Mapping[str, Any]]
    output_dir: Path
    device: str | None = None


@dataclass
class TrainResult:
    """What a training run produced."""

    adapter_dir: Path
    steps: int
    train_loss: float
    eval_loss: float | None
    #: Over all legs of a resumed run: its checkpoints carry the time and tokens before them.
    tokens_per_s: float
    train_seconds: float
    precision: Precision
    resumed_from: int = 0
    world_size: int = 1
    #: Sum of |w| over the trainable weights, per rank: data-parallel ranks must agree.
    rank_checksums: list[float] = field(default_factory=list)


# --- loss ------------------------------------------------------------------------------


def answer_loss_sum(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over answer tokens, and their count (a tensor: no host sync, no graph break).

    A batch's ``weights`` (per row) scale each row's tokens; ``label_smoothing`` spreads that
    share of each target over the vocabulary (training only: eval loss is never smoothed).

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
    weights = batch.get("weights")
    if weights is None:
        return F.cross_entropy(logits, targets[mask], reduction="sum", label_smoothing=label_smoothing), mask.sum()
    per_token = F.cross_entropy(logits, targets[mask], reduction="none", label_smoothing=label_smoothing)
    rows = mask.nonzero()[:, 0]  # the batch row of each answer token, in the order of ``targets[mask]``
    return (per_token * weights[rows].to(per_token.dtype)).sum(), mask.sum()


class AnswerLoss(torch.nn.Module):
    """``answer_loss_sum`` as a module's forward, so DDP/FSDP/DeepSpeed wrap the whole computation.

    Data-parallel wrappers sync gradients only for work done inside their ``forward``; the
    answer-only loss calls the decoder body and the head separately, so both must run in here.
    """

    def __init__(self, model: PeftModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
        weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
    ) -> torch.Tensor:  # fmt: skip
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if weights is not None:
            batch["weights"] = weights
        loss, _ = answer_loss_sum(self.model, batch, label_smoothing)
        return loss


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


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    examples: Sequence[Example],
    batch_size: int,
    pad_id: int,
    precision: Precision,
    accelerator: Accelerator,
) -> float:
    """Mean answer-token cross-entropy over ``examples`` (dropout off), shared across the ranks.

    ``model`` is the prepared ``AnswerLoss``; every rank runs the same number of batches (a
    sharded model needs all ranks in every forward) and the sums are reduced.
    """
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    order = sorted(range(len(examples)), key=lambda k: len(examples[k].input_ids))
    for start in range(0, len(order), batch_size):
        rows = [examples[k] for k in order[start : start + batch_size]]
        batch = shard_batch(rows, accelerator.process_index, accelerator.num_processes, pad_id)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with autocast(precision, accelerator.device):
            loss = model(**batch)
        total += torch.stack([loss.detach().double(), (batch["labels"][:, 1:] != IGNORE_INDEX).sum().double()])
    model.train(was_training)
    total = accelerator.reduce(total, "sum")
    return float(total[0] / total[1].clamp(min=1))


def adapter_state(accelerator: Accelerator, wrapped: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The peft model's full state dict, gathered from the ranks (a collective: call on all).

    Under FSDP and ZeRO-3 the weights are sharded and ``get_state_dict`` gathers them; the
    ``model.`` prefix is ``AnswerLoss``'s attribute name.
    """
    state = accelerator.get_state_dict(wrapped)
    return {key.removeprefix("model."): value for key, value in state.items()}



# --- training --------------------------------------------------------------------------


def total_steps(n_batches: int, cfg: TrainConfig) -> int:
    """Optimiser steps of the run: ``max_steps`` when positive, else epochs over the batches."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * n_batches / cfg.gradient_accumulation_steps))


def make_accelerator(train_cfg: TrainConfig, device: str | torch.device | None = None) -> Accelerator:
    """The ``Accelerator`` of a run: one process, or this worker's rank under a launcher.

    ``device="cpu"`` (or a machine without CUDA) keeps it on the CPU, where a launcher's
    workers talk gloo; under a launcher on CUDA it is one GPU per process with nccl.
    The scheduler steps once per optimiser step, which the loop does itself: Accelerate
    would otherwise step it once per process, as if each rank brought a batch of its own.
    """
    cpu = (torch.device(device).type == "cpu") if device is not None else not torch.cuda.is_available()
    return Accelerator(
        cpu=cpu,
        gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
    )


def rank_checksums(accelerator: Accelerator, params: Sequence[torch.Tensor]) -> list[float]:
    """Every rank's sum of |w| over ``params``; raises when the ranks disagree.

    Replicated data-parallel ranks apply the same all-reduced gradients, so their weights stay
    equal; ranks that differ trained alone (a launcher that started N unconnected processes).
    """
    local = torch.stack([p.detach().double().abs().sum() for p in params]).sum().reshape(1)
    sums = accelerator.gather(local.to(accelerator.device)).tolist()
    if max(sums) - min(sums) > 1e-6 * max(abs(v) for v in sums):
        raise RuntimeError(f"data-parallel ranks ended with different weights (|w| sums {sums}): gradients were not synced")
    return sums


def _sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


@dataclass
class _Run:
    """The prepared objects of one run, and where it starts."""

    peft_model: PeftModel
    wrapped: torch.nn.Module
    optimizer: Any
    scheduler: Any
    params: list[torch.Tensor]
    steps: int
    n_batches: int
    start_step: int
    #: Restored from the checkpoint resumed, then advanced step by step.
    progress: Progress


def _prepare(model: PreTrainedModel, n_examples: int, job: TrainJob, accelerator: Accelerator, precision: Precision) -> _Run:
    """LoRA on ``model``, optimizer and schedule prepared by Accelerate; resumed from the latest checkpoint."""
    cfg = job.train
    set_seed(cfg.seed)  # the same LoRA initialisation on every rank
    if precision == "fp32" and model.dtype != torch.float32:
        model = model.float()
    if not _sharded(accelerator):  # FSDP/DeepSpeed place (and shard) the weights in prepare
        model.to(accelerator.device)
    peft_model = add_lora(model, job.lora)
    peft_model.train()
    if accelerator.distributed_type == DistributedType.FSDP:
        # Wrap the LoRA layers in their own units (peft's policy) so frozen and trainable
        # weights never share a flat parameter.
        accelerator.state.fsdp_plugin.auto_wrap_policy = fsdp_auto_wrap_policy(peft_model)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # DeepSpeed wants the per-GPU batch, which it would otherwise read off a prepared
        # DataLoader; this loop has none.
        per_rank = math.ceil(cfg.batch_size / accelerator.num_processes)
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = per_rank
    n_batches = math.ceil(n_examples / cfg.batch_size)
    steps = total_steps(n_batches, cfg)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(
        _SCHEDULERS[cfg.lr_scheduler], optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * steps), num_training_steps=steps
    )
    keep_adapter_only(accelerator, peft_model)
    wrapped, optimizer, scheduler = accelerator.prepare(AnswerLoss(peft_model), optimizer, scheduler)
    run = _Run(peft_model, wrapped, optimizer, scheduler, params, steps, n_batches, 0, Progress())
    checkpoint = latest_checkpoint(job.output_dir) if cfg.resume else None
    if checkpoint is not None:
        run.progress = load_checkpoint(accelerator, checkpoint)
        run.start_step = run.progress.step
    return run


def _step(run: _Run, window: Sequence[Sequence[Example]], accelerator: Accelerator, job: TrainJob, pad_id: int, precision: Precision) -> tuple[float, float, float]:
    """One optimiser step over ``window`` (GA micro-batches); returns (loss per answer token, tokens, lr).

    The loss is normalised by the answer tokens of the whole global window (all ranks, all
    micro-batches), so GA x B rows over N processes equal one batch of GA*B rows. Every rank
    knows every row, so the count needs no communication. Accelerate divides the loss by GA
    and DDP averages over the ranks; the scale undoes both.
    """
    world, device = accelerator.num_processes, accelerator.device
    window_tokens = sum(answer_tokens(e) for batch in window for e in batch)
    scale = world * len(window) / max(window_tokens, 1)
    local = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, input tokens
    for rows in window:
        batch = {k: v.to(device) for k, v in shard_batch(rows, accelerator.process_index, world, pad_id).items()}
        with accelerator.accumulate(run.wrapped):
            with autocast(precision, device):
                loss_sum = run.wrapped(**batch, label_smoothing=job.train.label_smoothing)
            accelerator.backward(loss_sum * scale)
        local += torch.stack([loss_sum.detach().double(), batch["attention_mask"].sum().double()])
    accelerator.clip_grad_norm_(run.wrapped.parameters(), job.train.max_grad_norm)
    learning_rate = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    step_loss, step_tokens = accelerator.reduce(local, "sum").tolist()
    return step_loss / max(window_tokens, 1), step_tokens, learning_rate


def train_lora(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    job: TrainJob,
    on_log: OnLog | None = None,
    progress: bool = True,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Fine-tune a LoRA adapter on ``job.train_records``; the adapter lands in ``job.output_dir/adapter``.

    ``model`` is the base causal LM; load it in ``base_dtype(resolve_precision(...))`` to avoid
    per-step weight casts (an fp32 run upcasts a bf16 model). It is wrapped with peft in place.
    """
    if not job.train_records:
        raise ValueError("train_lora needs at least one training record")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    examples = encode_records(job.train_records, tokenizer)
    eval_examples = encode_records(list(job.val_records)[: job.train.eval_rows], tokenizer)
    return train_examples(model, examples, eval_examples, pad_id, job, on_log, progress, accelerator)


def train_examples(
    model: PreTrainedModel,
    examples: Sequence[Example],
    eval_examples: Sequence[Example],
    pad_id: int,
    job: TrainJob,
    on_log: OnLog | None = None,
    progress: bool = True,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """``train_lora`` on tokenized examples (benchmarks feed synthetic ones).

    Micro-batches form one endless stream over epochs, and optimiser step ``k`` consumes
    micro-batches ``k*GA .. k*GA+GA-1``, each split row-wise across the processes; with epoch
    batches a pure function of the seed this makes resuming exact. ``train.batch_size`` is the
    global micro-batch, so the number of processes changes neither steps nor the schedule.
    Run by every worker under a launcher, ``accelerator`` (default: ``make_accelerator``) knows
    the rank; only the main process calls ``on_log(step, metrics)`` (loss, learning_rate,
    tokens_per_s after every step, eval_loss at the end), shows progress and writes files.
    """
    cfg = job.train
    accelerator = accelerator or make_accelerator(cfg, job.device)
    precision = resolve_precision(cfg.precision, accelerator.device)
    log = (on_log if accelerator.is_main_process else None) or (lambda step, metrics: None)
    run = _prepare(model, len(examples), job, accelerator, precision)
    lengths, accum, epochs = [len(e.input_ids) for e in examples], cfg.gradient_accumulation_steps, {}

    def micro_batch(index: int) -> list[Example]:
        epoch, offset = divmod(index, run.n_batches)
        if epoch not in epochs:
            epochs.clear()
            epochs[epoch] = epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)
        return [examples[k] for k in epochs[epoch][offset]]

    bar = tqdm(total=run.steps, initial=run.start_step, desc="train", disable=not (progress and accelerator.is_main_process), dynamic_ncols=True)
    # ``run.progress`` starts from the checkpoint's, so earlier legs' time and tokens count too;
    # its seconds are the loop's wall time, checkpoint saves included.
    tick = time.perf_counter()
    for step in range(run.start_step, run.steps):
        step_started = time.perf_counter()
        loss, tokens, learning_rate = _step(run, [micro_batch(step * accum + i) for i in range(accum)], accelerator, job, pad_id, precision)
        now = time.perf_counter()
        seconds = now - step_started
        run.progress.advance(loss, int(tokens), now - tick)
        tick = now
        done = run.progress.step
        if done == run.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            save_checkpoint(accelerator, job.output_dir, run.progress)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        metrics = {"loss": loss, "learning_rate": learning_rate, "tokens_per_s": tokens / seconds, "tokens": tokens}
        log(done, {**metrics, "step_seconds": seconds, "epoch": (done * accum) / run.n_batches})
    bar.close()
    return _finish(run, eval_examples, pad_id, job, accelerator, precision, log)


def _finish(
    run: _Run, eval_examples: Sequence[Example], pad_id: int, job: TrainJob, accelerator: Accelerator,
    precision: Precision, log: OnLog,
) -> TrainResult:  # fmt: skip
    """Eval loss, the rank check and the adapter (written by the main process)."""
    done = run.progress
    eval_loss = None
    if eval_examples:
        eval_loss = evaluate_loss(run.wrapped, eval_examples, job.train.batch_size, pad_id, precision, accelerator)
        log(run.steps, {"eval_loss": eval_loss})
    checksums = rank_checksums(accelerator, run.params) if not _sharded(accelerator) else []
    adapter_dir = Path(job.output_dir) / "adapter"
    weights = adapter_state(accelerator, run.wrapped)
    if accelerator.is_main_process:
        run.peft_model.save_pretrained(adapter_dir, state_dict=weights)
    accelerator.wait_for_everyone()
    return TrainResult(
        adapter_dir=adapter_dir,
        steps=run.steps,
        train_loss=sum(done.losses) / max(len(done.losses), 1),
        eval_loss=eval_loss,
        tokens_per_s=done.tokens / done.seconds if done.seconds > 0 and done.tokens else 0.0,
        train_seconds=done.seconds,
        precision=precision,
        resumed_from=run.start_step,
        world_size=accelerator.num_processes,
        rank_checksums=checksums,
    )
