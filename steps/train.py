"""Training step: LoRA SFT with MLflow logging; the adapter is the step's artifact."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from zenml import log_metadata, step

from materializers.records import InstructionRecords
from sentibridge import tracking
from sentibridge.model.base import load_causal_lm, load_tokenizer, resolve_base_model
from sentibridge.model.checkpoints import keep_latest_checkpoint
from sentibridge.config import LoraConfig, ModelConfig, Settings, TrainConfig
from sentibridge.home import resolve_home
from sentibridge.model.precision import base_dtype, default_device, resolve_precision
from sentibridge.model.launch import needs_workers, train_in_workers
from sentibridge.model.training import TrainJob, train_lora
from steps.scratch import output_folder


def run_key(
    model_cfg: ModelConfig,
    lora_cfg: LoraConfig,
    train_cfg: TrainConfig,
    train_records: Sequence[Mapping[str, Any]],
    val_records: Sequence[Mapping[str, Any]],
) -> str:
    """Same training inputs -> same checkpoint folder, so an interrupted run resumes.

    The records stand for everything upstream (data, augmentation, demonstrations, templates),
    so a change there starts afresh while e.g. a gate setting does not matter.
    """
    records = hashlib.sha256()
    for record in (*train_records, None, *val_records):
        records.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    blob = json.dumps(
        {
            "model": model_cfg.model_dump(mode="json"),
            "lora": lora_cfg.model_dump(mode="json"),
            "train": train_cfg.model_dump(mode="json"),
            "records": records.hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@step(experiment_tracker=True, enable_cache=False)
def train(
    train_records: InstructionRecords,
    val_records: InstructionRecords,
    model_cfg: ModelConfig,
    lora_cfg: LoraConfig,
    train_cfg: TrainConfig,
    data_report: dict,
    run_config: dict,
) -> tuple[Annotated[Path, "lora_adapter"], Annotated[dict, "train_summary"]]:
    """Fine-tune a LoRA adapter on the base model; log params, loss, lr, tokens/s to MLflow.

    ``run_config`` (the whole resolved configuration) is only logged, as the run's params; the
    training itself reads ``model_cfg``, ``lora_cfg`` and ``train_cfg``. The final checkpoint
    stays in ``<home>/runs/<run key>`` until ``register`` has registered the model.
    """
    tracking.log_run_context(Settings.model_validate(run_config), data_report)
    home = resolve_home()
    base = resolve_base_model(model_cfg, home.embedded_model)
    device = default_device()
    key = run_key(model_cfg, lora_cfg, train_cfg, train_records, val_records)
    output_dir = home.runs / key
    job = TrainJob(base, model_cfg, lora_cfg, train_cfg, train_records, val_records, output_dir, device.type)
    if needs_workers(train_cfg):
        # N data-parallel workers; their main rank's step metrics reach this run afterwards.
        result = train_in_workers(job, on_log=tracking.log_step_metrics)
    else:
        precision = resolve_precision(train_cfg.precision, device)
        tokenizer = load_tokenizer(base, model_cfg)
        model = load_causal_lm(base, model_cfg, device, base_dtype(precision))
        result = train_lora(model, tokenizer, job, on_log=tracking.log_step_metrics)
    summary = {
        "base_model": model_cfg.base,
        "steps": result.steps,
        "train_loss": result.train_loss,
        "eval_loss": result.eval_loss,
        "tokens_per_s": result.tokens_per_s,
        "train_seconds": result.train_seconds,
        "precision": result.precision,
        "resumed_from": result.resumed_from,
        "device": str(device),
        "world_size": result.world_size,
        "train_records": len(train_records),
        "run_key": key,
    }
    tracking.log_metrics({k: summary[k] for k in ("train_loss", "tokens_per_s", "train_seconds") if summary[k] is not None})
    log_metadata(metadata={k: v for k, v in summary.items() if v is not None}, artifact_name="lora_adapter", infer_artifact=True)
    adapter = output_folder("lora_adapter") / "adapter"
    shutil.copytree(result.adapter_dir, adapter)
    # Until the model is registered (``register`` releases the folder), a run cut off in a later
    # step, or a soup's other members, restores this training at its end rather than repeating it.
    keep_latest_checkpoint(output_dir)
    return adapter, summary
