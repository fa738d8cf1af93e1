"""MLflow at the edge: run context, datasets, metric callbacks, run names. Quiet without an active run.

Registering models lives in ``sentibridge.registry.registration``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml
from pydantic import BaseModel

from sentibridge import artifacts
from sentibridge.config import Settings
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
    mlflow.log_dict(settings.model_dump(mode="json"), artifacts.RESOLVED_CONFIG_JSON)
    mlflow.log_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), artifacts.RESOLVED_CONFIG_YAML)
    mlflow.log_dict(
        {k: v for k, v in data_report.items() if k not in ("languages_in",)}, artifacts.DATA_REPORT
    )
    for split in _SPLIT_CONTEXTS:
        log_dataset(data_report, split)
    issues = data_report.get("label_issues") or {}
    if issues.get("mode", "off") != "off":
        mlflow.log_dict(issues, artifacts.LABEL_ISSUES)
        mlflow.log_metrics({"label_issues_flagged": issues["flagged"],
                            **{f"label_issues_flagged_{lang}": n for lang, n in issues["per_language"].items()}})


#: MLflow's input contexts for the splits.
_SPLIT_CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


def log_dataset(data_report: Mapping[str, Any], split: str) -> None:
    """One split of the data as an MLflow dataset input: digest the DVC md5, source the data path.

    Named ``<data>-<split>`` because MLflow keeps a single input per (name, digest) on a run;
    the split's rows are in the input tag ``rows``.
    """
    if not active():
        return
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    path = str(data_report["data_path"])
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns about it
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(path)
    dataset = MetaDataset(source, name=f"{Path(path).name or path}-{split}", digest=str(data_report["data_version"]))
    rows = sum(int(counts.get(split, 0)) for counts in (data_report.get("languages") or {}).values())
    mlflow.log_input(dataset, context=_SPLIT_CONTEXTS[split], tags={"rows": str(rows)})


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


def name_run(name: str) -> None:
    """Rename the active run so people can tell runs apart (ZenML names it after the pipeline run).

    The old name stays in the tag ``zenml_pipeline_run``. ZenML finds a pipeline's MLflow run by
    its name, so only the last tracked step may call this.
    """
    run = mlflow.active_run()
    if run is None:
        return
    mlflow.set_tag("zenml_pipeline_run", run.info.run_name)
    mlflow.MlflowClient().update_run(run.info.run_id, name=name)


def log_table(frame: pd.DataFrame, name: str) -> None:
    """A table MLflow shows in its UI (``name`` ends in .json)."""
    if active():
        mlflow.log_table(data=frame, artifact_file=name)


def log_experiment(
    client: mlflow.MlflowClient, experiment: str, name: str, parent_id: str | None,
    child_ids: list[str], metrics: Mapping[str, float], files: list[Path],
) -> str:
    """One parent run for ``sentibridge experiment``: its runs become children, the report its artifacts.

    MLflow nests a run under another through the ``mlflow.parentRunId`` tag, so each pipeline
    run (logged by ZenML's tracker) is tied to the parent afterwards. ``parent_id`` reuses the
    parent of a resumed experiment. Runs that this tracking store does not hold (a resume from
    another home or server: the runs folder travels, MLflow's runs do not) are left out, and a
    parent it does not hold is created anew. ``experiment`` must exist (``stack.ensure_experiment``
    creates it with its artifacts in the home). Returns the parent's run id.
    """
    child_ids = [child for child in child_ids if _has_run(client, child)]
    if parent_id is not None and not _has_run(client, parent_id):
        parent_id = None
    if parent_id is None:
        parent_id = client.create_run(
            client.get_experiment_by_name(experiment).experiment_id, run_name=f"experiment {name}",
            tags={"sentibridge.experiment": name},
        ).info.run_id
    for child in child_ids:
        client.set_tag(child, "mlflow.parentRunId", parent_id)
    for key, value in metrics.items():
        client.log_metric(parent_id, key, float(value))
    for path in files:
        client.log_artifact(parent_id, str(path), "report")
    client.set_terminated(parent_id)
    return parent_id


def _has_run(client: mlflow.MlflowClient, run_id: str) -> bool:
    """Whether this tracking store holds ``run_id``."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def settings_to_flat_dict(settings: Settings) -> dict[str, Any]:
    """Dotted keys for MLflow params, one per setting: a mapping setting such as
    ``data.max_rows_by_language`` is one value, so that an empty one is logged too."""
    flat: dict[str, Any] = {}

    def walk(model: BaseModel, dumped: dict[str, Any], prefix: str) -> None:
        for name, value in dumped.items():
            if isinstance(getattr(model, name), BaseModel):
                walk(getattr(model, name), value, f"{prefix}{name}.")
            else:
                flat[f"{prefix}{name}"] = value

    walk(settings, settings.model_dump(mode="json"), "")
    return flat
