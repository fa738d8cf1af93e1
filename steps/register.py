"""Register step: merge in 16 bits, log a servable MLflow pyfunc, register it, link the ZenML Model."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import torch
from zenml import log_metadata, step

from sentibridge import artifacts, tracking
from sentibridge.model.base import resolve_base_model
from sentibridge.config import LoraConfig, ModelConfig, RegistryConfig
from sentibridge.augment.demonstrations import STORE_DIR
from sentibridge.inference.label_calibration import save_offsets
from sentibridge.home import resolve_home
from sentibridge.model.checkpoints import release_checkpoints
from sentibridge.model.merge import merge_adapter
from sentibridge.registry.registration import f1_tags, log_and_register_model


@step(experiment_tracker=True, enable_cache=False)
def register(
    lora_adapter: Path,
    demonstration_store: Path,
    metrics: dict,
    train_summary: dict,
    data_report: dict,
    model_cfg: ModelConfig,
    lora_cfg: LoraConfig,
    demonstrations_k: int,
    registry_cfg: RegistryConfig,
    run_config: dict,
) -> Annotated[dict, "registration"]:
    """A new version in the MLflow Model Registry, with per-language F1 on it and on the ZenML Model.

    Merged weights live only in MLflow (16 bits); ZenML keeps the small adapter, so no run
    stores the same weights twice. ``run_config`` (the whole resolved configuration) is saved
    next to the weights, where serving reads its ``model`` and ``eval`` sections.
    """
    base = resolve_base_model(model_cfg, resolve_home().embedded_model)
    per_language = {lang: round(v["f1"], 4) for lang, v in metrics["per_language"].items()}
    lora = lora_cfg.model_dump(mode="json")
    tags = {
        "data_version": data_report["data_version"],
        "test_set": metrics["test_set"],
        "base_model": model_cfg.base,
        "lora": json.dumps(lora),
        "f1_macro_avg": f"{metrics['f1_macro_avg']:.4f}",
        **f1_tags(per_language),  # one tag per language: readable in the UI, unlike a JSON blob in a cell
        "mlflow_run_id": tracking.current_run_id() or "",
    }
    if "soup" in train_summary:  # one model averaged from several seeds: say which
        tags["soup_seeds"] = ",".join(str(seed) for seed in train_summary["soup"]["seeds"])
        tracking.log_json(train_summary["soup"], artifacts.SOUP_MEMBERS)
    with tempfile.TemporaryDirectory(prefix="sentibridge-merge-") as scratch:
        merged = merge_adapter(
            base, lora_adapter, Path(scratch) / "merged", model_cfg, resolved_config=run_config, dtype=torch.bfloat16
        )
        if demonstrations_k:  # served prompts need the same examples as training
            shutil.copytree(demonstration_store, merged / STORE_DIR)
        if metrics.get("calibration", {}).get("offsets"):  # served answers are the evaluated ones
            save_offsets(merged, metrics["calibration"]["offsets"], metrics["calibration"]["method"])
        registration = log_and_register_model(merged, registry_cfg.model_name, tags)
    registration.update(mlflow_run_id=tracking.current_run_id() or "", tracking_uri=tracking.tracking_uri())
    # The registry holds the model now: its training checkpoints (a soup's members' too) go.
    release_checkpoints(resolve_home().runs, train_summary)
    log_metadata(
        metadata={
            "mlflow_registered_model": registration["registered_model"],
            "mlflow_model_version": registration["model_version"],
            "data_version": data_report["data_version"],
            "base_model": model_cfg.base,
            "lora": lora,
            "f1_macro_avg": metrics["f1_macro_avg"],
            "per_language_f1": per_language,
            "train_steps": train_summary["steps"],
        },
        infer_model=True,
    )
    return registration
