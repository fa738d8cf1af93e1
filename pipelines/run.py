"""Run the sentibridge pipeline and hand back typed results.

The one place that knows step and output names: callers (the CLI) get ``ValidateResult`` and
``TrainResult`` and never look inside a ZenML run.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sentibridge.config import Settings
from sentibridge.errors import DataError, StepFailed

if TYPE_CHECKING:
    from sentibridge.data.version import DataVersion

#: The prepared data that ``validate --export`` writes: file stem -> (step, output).
PREPARED = {
    "train": ("label_issues", "checked_train_rows"),
    "val": ("split", "val_rows"),
    "test": ("split", "test_rows"),
    "leaks": ("split", "leaks"),
    "label_issues": ("label_issues", "label_issues"),
    "quarantine": ("ingest", "quarantine"),
}


@dataclass(frozen=True)
class ValidateResult:
    """A data-only run: its ids, the data report and, when asked for, the prepared frames."""

    run_id: str
    run_name: str
    data_report: dict[str, Any]
    seconds: float
    prepared: dict[str, pd.DataFrame] = field(default_factory=dict)

    def export(self, folder: Path) -> None:
        """Write the prepared splits as Parquet and the report as JSON (the DVC stage's output)."""
        if not self.prepared:
            raise ValueError("run validate(..., prepared=True) to export the prepared splits")
        folder.mkdir(parents=True, exist_ok=True)
        for stem, frame in self.prepared.items():
            frame.to_parquet(folder / f"{stem}.parquet", index=False)
        text = json.dumps(self.data_report, indent=2, ensure_ascii=False, default=str)
        (folder / "report.json").write_text(text + "\n", encoding="utf-8")


@dataclass(frozen=True)
class TrainResult:
    """A whole run: scores per language, the registered version and the gate's decision."""

    run_id: str
    run_name: str
    data_report: dict[str, Any]
    #: ``per_language`` (code -> {f1, accuracy, support}), ``f1_macro_avg``, evaluation timings.
    metrics: dict[str, Any]
    #: ``registered_model``, ``model_version``, ``mlflow_run_id``, ``tracking_uri``.
    registration: dict[str, Any]
    #: The gate's record (``registry.gate.Decision.to_dict``); ``promote`` says whether it won.
    decision: dict[str, Any]
    augmentation: dict[str, Any]
    train_summary: dict[str, Any]
    seconds: float
    #: The evaluated test rows: ``id, language, label, pred`` (calibrated) and the label scores.
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def promoted(self) -> bool:
        return bool(self.decision["promote"])


def validate(settings: Settings, prepared: bool = False, version: DataVersion | None = None) -> ValidateResult:
    """Ingest, validate and split ``settings.data.path``; with ``prepared``, load the splits too.

    ``version``: the data version when the caller already knows it (``at_revision``).
    """
    started = time.perf_counter()
    run = _run(settings, data_only=True, version=version)
    frames = {stem: _output(run, *where) for stem, where in PREPARED.items()} if prepared else {}
    return ValidateResult(
        run_id=str(run.id),
        run_name=run.name,
        data_report=_output(run, "label_issues", "data_report"),
        seconds=time.perf_counter() - started,
        prepared=frames,
    )


def train(settings: Settings, version: DataVersion | None = None, run_config: Path | None = None) -> TrainResult:
    """The whole pipeline: data, augmentation, LoRA training, evaluation, registration, gate.

    ``version``: the data version when the caller already computed it (``retrain``), so the
    data is hashed once. ``run_config``: a ZenML run-config YAML for the stack (``--run-config``).
    """
    started = time.perf_counter()
    run = _run(settings, data_only=False, version=version, run_config=run_config)
    return TrainResult(
        run_id=str(run.id),
        run_name=run.name,
        data_report=_output(run, "label_issues", "data_report"),
        metrics=_output(run, "evaluate", "metrics"),
        registration=_output(run, "register", "registration"),
        decision=_output(run, "gate", "decision"),
        augmentation=_output(run, "augment", "augmentation_report"),
        train_summary=_output(run, "soup" if settings.train.soup_seeds else "train", "train_summary"),
        seconds=time.perf_counter() - started,
        predictions=_output(run, "evaluate", "predictions"),
    )


def at_revision(settings: Settings, rev: str) -> tuple[Settings, DataVersion]:
    """``settings`` whose ``data.path`` is a copy of that path as of git revision ``rev``, and its version.

    The copy lives in the home (``data-revisions/<md5>/``), read through DVC (``--data-rev``).
    """
    from sentibridge.data.dvc_source import read_at_revision
    from sentibridge.home import resolve_home

    copy, version = read_at_revision(settings.data.path, rev, resolve_home().root / "data-revisions")
    at_rev = settings.model_copy(deep=True)
    at_rev.data.path = str(copy)
    return at_rev, version


def schedule(settings: Settings, zenml_schedule, run_config: Path | None = None) -> None:
    """Register the whole pipeline with a ZenML ``Schedule`` on the active orchestrator.

    ``zenml_schedule`` None: the ``schedule`` of the ``run_config`` file.
    """
    _run(settings, data_only=False, zenml_schedule=zenml_schedule, run_config=run_config, scheduled=True)


def run_config_cron(run_config: Path) -> str | None:
    """The cron expression of the ``schedule`` in a ZenML run-config file (None without one)."""
    from sentibridge.config import read_yaml_mapping
    from sentibridge.errors import ConfigError
    from sentibridge.schedule import validate_cron

    loaded = read_yaml_mapping(run_config, "run config", "a mapping (ZenML's run-config format)")
    plan = loaded.get("schedule") or {}
    if plan and not plan.get("cron_expression"):
        raise ConfigError(f"run config {run_config}: a schedule needs a cron_expression")
    return validate_cron(plan["cron_expression"]) if plan else None


def pipeline_options(settings: Settings, data_only: bool, run_name: str, run_config: Path | None = None) -> dict:
    """The ``with_options`` arguments of one run; ``run_config``'s stack settings are merged in by ZenML."""
    options: dict = {"run_name": run_name}
    if run_config is not None:
        options["config_path"] = str(run_config)
    if not data_only:
        from zenml import Model

        options["model"] = Model(name=settings.registry.model_name, description="sentibridge sentiment model")
        options["settings"] = {"experiment_tracker": {"experiment_name": settings.registry.experiment}}
    return options


def _run(
    settings: Settings,
    data_only: bool,
    zenml_schedule=None,
    version: DataVersion | None = None,
    run_config: Path | None = None,
    scheduled: bool = False,
):
    """Activate the home and stack, run the pipeline, return the ZenML run (None when scheduled)."""
    from sentibridge.data.ingest import read_dataset
    from sentibridge.data.version import data_version
    from sentibridge.home import activate, ensure_experiment, ensure_stack, quiet

    path = Path(settings.data.path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    # A file that cannot be read fails here, in about a second, rather than in the ingest step
    # after ZenML and the stack have started (10-15 s); reading again there costs ~0.3 s per 24k rows.
    read_dataset(path)
    home = activate()
    if not data_only:  # the tracking server's first request: an outage or a refused login stops here
        ensure_experiment(home, settings.registry.experiment)
    ensure_stack(home)
    metadata = (version or data_version(path)).as_metadata()
    from pipelines.sentibridge_pipeline import sentibridge_pipeline

    run_name = f"sentibridge-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    options = pipeline_options(settings, data_only, run_name, run_config)
    if zenml_schedule is not None:
        options["schedule"] = zenml_schedule
    try:
        with quiet():
            sentibridge_pipeline.with_options(**options)(settings=settings, data_version=metadata, data_only=data_only)
    except RuntimeError as exc:
        raise_step_error(run_name)
        raise exc
    if scheduled:
        return None
    from zenml.client import Client

    return Client().get_pipeline_run(run_name)


def raise_step_error(run_name: str) -> None:
    """Raise a failed step's own error: ZenML's exception only says "failure in step(s)".

    A ``sentibridge.errors`` class is re-raised as itself (the user's mistake, one line);
    anything else becomes ``StepFailed`` carrying the step's traceback for ``--debug``.
    Returns only when no step recorded an error (the run failed around the steps).
    """
    from zenml.client import Client

    from sentibridge import errors

    try:
        run = Client().get_pipeline_run(run_name)
    except KeyError:  # the run was never created
        return
    for step in run.steps.values():
        info = step.exception_info
        if info is None:
            continue
        source = info.source or "Exception"
        name = source.rsplit(".", 1)[-1]
        cls = getattr(errors, name, None)
        if source.startswith("sentibridge.errors.") and isinstance(cls, type) and issubclass(cls, errors.SentibridgeError):
            raise cls(info.message or f"step {step.name} failed") from None
        raise StepFailed(step.name, f"{name}: {info.message}" if info.message else name, info.traceback or "") from None


def _output(run, step: str, name: str):
    return run.steps[step].outputs[name][0].load()
