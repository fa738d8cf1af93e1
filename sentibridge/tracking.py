"""MLflow at the edge: run context, metric callbacks and registry calls. Quiet without an active run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml

from sentibridge.config import Settings, settings_to_flat_dict
from sentibridge.provenance import git_commit, library_versions


def active() -> bool:
    return mlflow.active_run() is not None


def log_run_context(settings: Settings, data_report: dict[str, Any]) -> None:
    """Params (the resolved config), the config file, data version, git commit and library versions."""
    if not active():
        return
    mlflow.log_params({k: ("" if v is None else str(v)[:500]) for k, v in settings_to_flat_dict(settings).items()})
    tags = {
        "data_version": data_report.get("data_version", ""),
        "data_version_source": data_report.get("data_version_source", ""),
        "data_path": data_report.get("data_path", ""),
        "git_commit": git_commit(),
        **{f"version.{name}": version for name, version in library_versions().items()},
    }
    mlflow.set_tags(tags)
    mlflow.log_dict(settings.model_dump(mode="json"), "config/resolved_config.json")
    mlflow.log_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), "config/resolved_config.yaml")
    mlflow.log_dict(
        {k: v for k, v in data_report.items() if k not in ("languages_in",)}, "data/data_report.json"
    )


def log_step_metrics(step: int, metrics: dict[str, float]) -> None:
    """``on_log`` callback for training: per-step loss, learning rate, tokens/s, eval loss."""
    if active():
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_metrics(metrics: dict[str, float]) -> None:
    if active():
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})


def log_files(folder: Path, artifact_path: str) -> None:
    if active():
        mlflow.log_artifacts(str(folder), artifact_path)


def log_json(payload: Any, name: str) -> None:
    if active():
        mlflow.log_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str), name)


def current_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


#: What a served model needs besides the bundled sentibridge code.
SERVING_PACKAGES = ("torch", "transformers", "peft", "accelerate", "safetensors", "pandas", "numpy", "pydantic", "pyyaml", "tqdm", "mlflow")


def serving_requirements() -> list[str]:
    """Pinned to the versions this run used, so MLflow never has to infer them (slow)."""
    from importlib import metadata

    return [f"{name}=={metadata.version(name)}" for name in SERVING_PACKAGES]


def log_and_register_model(merged_dir: Path, model_name: str, tags: dict[str, str]) -> dict[str, str]:
    """Log the merged model as an MLflow pyfunc (from code) and register a new version."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    import sentibridge
    from sentibridge.inference import mlflow_model
    from sentibridge.inference.serving import ARTIFACT_KEY, OUTPUT_COLUMNS

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("string", "language", required=False)]),
        outputs=Schema([ColSpec("string", "label"), ColSpec("long", "label_id")]
                       + [ColSpec("double", c) for c in OUTPUT_COLUMNS[2:]]),
    )
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=mlflow_model.__file__,
        artifacts={ARTIFACT_KEY: str(merged_dir)},
        code_paths=[str(Path(sentibridge.__file__).parent)],
        pip_requirements=serving_requirements(),
        signature=signature,
        registered_model_name=model_name,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, value)
    return {"registered_model": model_name, "model_version": version, "model_uri": f"models:/{model_name}/{version}"}


def log_table(frame: pd.DataFrame, name: str) -> None:
    """A table MLflow shows in its UI (``name`` ends in .json)."""
    if active():
        mlflow.log_table(data=frame, artifact_file=name)
