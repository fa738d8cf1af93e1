"""Training step: LoRA SFT with MLflow logging; the adapter is the step's artifact."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from zenml import log_metadata, step

from materializers.records import InstructionRecords
from sentibridge import tracking
from sentibridge.model.base import load_causal_lm, load_tokenizer, resolve_base_model
from sentibridge.config import Settings
from sentibridge.home import resolve_home
from sentibridge.model.precision import base_dtype, default_device, resolve_precision
from sentibridge.model.training import train_lora


def run_key(settings: Settings, data_version: str) -> str:
    """Same config and data -> same checkpoint folder, so an interrupted run resumes."""
    blob = json.dumps({"settings": settings.model_dump(mode="json"), "data": data_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@step(experiment_tracker=True, enable_cache=False)
def train(
    train_records: InstructionRecords,
    val_records: InstructionRecords,
    settings: Settings,
    data_report: dict,
) -> tuple[Annotated[Path, "lora_adapter"], Annotated[dict, "train_summary"]]:
    """Fine-tune a LoRA adapter on the base model; log params, loss, lr, tokens/s to MLflow."""
    tracking.log_run_context(settings, data_report)
    home = resolve_home()
    base = resolve_base_model(settings.model, home.embedded_model)
    device = default_device()
    precision = resolve_precision(settings.train.precision, device)
    tokenizer = load_tokenizer(base, settings.model)
    model = load_causal_lm(base, settings.model, device, base_dtype(precision))
    output_dir = home.runs / run_key(settings, data_report["data_version"])
    result = train_lora(
        model,
        tokenizer,
        train_records,
        val_records,
        settings.lora,
        settings.train,
        output_dir,
        on_log=tracking.log_step_metrics,
        device=device,
    )
    summary = {
        "base_model": settings.model.base,
        "steps": result.steps,
        "train_loss": result.train_loss,
        "eval_loss": result.eval_loss,
        "tokens_per_s": result.tokens_per_s,
        "train_seconds": result.train_seconds,
        "precision": result.precision,
        "resumed_from": result.resumed_from,
        "device": str(device),
        "train_records": len(train_records),
    }
    tracking.log_metrics({k: summary[k] for k in ("train_loss", "tokens_per_s", "train_seconds") if summary[k] is not None})
    log_metadata(metadata={k: v for k, v in summary.items() if v is not None}, artifact_name="lora_adapter", infer_artifact=True)
    # Checkpoints exist to resume an interrupted run; a finished run's adapter lives on as the
    # artifact, and leaving checkpoints behind would make the next identical run "resume" at its end.
    adapter = Path(tempfile.mkdtemp(prefix="sentibridge-adapter-")) / "adapter"
    shutil.copytree(result.adapter_dir, adapter)
    shutil.rmtree(output_dir, ignore_errors=True)
    return adapter, summary
