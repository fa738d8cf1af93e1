"""Run the sentibridge pipeline and hand back typed results.

The one place that knows step and output names: callers (the CLI) get ``ValidateResult`` and
``TrainResult`` and never look inside a ZenML run.
"""

from __future__ import annotations

import json
import sys
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
    #: The gate's record (``registry.decision.Decision.to_dict``); ``promote`` says whether it won.
    decision: dict[str, Any]
    augmentation: dict[str, Any]
    train_summary: dict[str, Any]
    seconds: float
    #: The evaluated test rows: ``id, language, label, pred`` (calibrated) and the label scores.
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def promoted(self) -> bool:
        return bool(self.decision["promote"])

    def text(self) -> str:
        """What ``train`` prints: augmentation, scores per language, calibration, the version, the gate."""
        from sentibridge.registry.decision import Decision
        from sentibridge.tables import text_table

        metrics, registration, summary = self.metrics, self.registration, self.train_summary
        lines = []
        added = {lang["language"]: lang["retrieved"] + lang["self_labelled"] for lang in self.augmentation["languages"]}
        if any(added.values()):
            lines.append("augmented: " + ", ".join(f"{lang} +{n}" for lang, n in added.items() if n))
        rows = [[lang, v["support"], v["accuracy"], v["f1"]] for lang, v in metrics["per_language"].items()]
        rows.append(["mean", sum(r[1] for r in rows), "", metrics["f1_macro_avg"]])
        lines.append(text_table(["language", "support", "accuracy", "macro-F1"], rows))
        calibration = metrics.get("calibration") or {}
        if calibration.get("offsets"):
            change = 100 * (metrics["f1_macro_avg"] - calibration["uncalibrated_f1_macro_avg"])
            count = len(calibration["offsets"])
            lines.append(f"calibrated {count} language{'s' if count != 1 else ''} on {calibration['val_rows']} val rows "
                         f"({calibration['method']}): mean macro-F1 {change:+.1f} points against the raw scores")
        lines.append(
            f"trained {summary['steps']} steps ({summary['precision']}, {summary['tokens_per_s']:.0f} tokens/s); "
            f"registered {registration['registered_model']} version {registration['model_version']}"
        )
        lines.append(Decision.from_dict(self.decision).text())
        lines.append(f"pipeline run: {self.run_name}  mlflow run: {registration['mlflow_run_id']}  ({self.seconds:.0f} s)")
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """The ``train --json`` fields."""
        metrics, registration = self.metrics, self.registration
        return {
            "ok": True,
            "pipeline_run_id": self.run_id,
            "mlflow_run_id": registration["mlflow_run_id"],
            "tracking_uri": registration["tracking_uri"],
            "registered_model": registration["registered_model"],
            "model_version": registration["model_version"],
            "per_language": metrics["per_language"],
            "confusion": metrics.get("confusion"),
            "f1_macro_avg": metrics["f1_macro_avg"],
            "promoted": self.promoted,
            "decision": self.decision,
            "train": self.train_summary,
            "eval": {k: metrics.get(k) for k in ("eval_seconds", "eval_rows_per_s", "precision")},
            "calibration": metrics.get("calibration"),
            "augmentation": self.augmentation,
            "seconds": round(self.seconds, 1),
        }


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
    from sentibridge.config_loading import read_yaml_mapping
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
    from sentibridge.console import quiet
    from sentibridge.data.ingest import read_dataset
    from sentibridge.data.version import data_version
    from sentibridge.home import activate
    from sentibridge.stack import ensure_experiment, ensure_stack

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
    options.update(_fail_fast())
    try:
        with quiet():
            sentibridge_pipeline.with_options(**options)(settings=settings, data_version=metadata, data_only=data_only)
    except Exception as exc:  # noqa: BLE001 - a failed step: re-raised as its own error below
        raise_step_error(run_name, exc)
        raise
    if scheduled:
        return None
    from zenml.client import Client

    return Client().get_pipeline_run(run_name)


def _fail_fast() -> dict:
    """``execution_mode`` FAIL_FAST where the orchestrator has it (the local one does).

    Then the failed step's own exception reaches the CLI: ZenML records none for a step that
    failed while its stack prepared it (a tracker refusing the stack's login), and otherwise
    only raises "failure in step(s)". Other orchestrators keep their default.
    """
    from zenml.client import Client
    from zenml.enums import ExecutionMode

    orchestrator = Client().active_stack.orchestrator
    return {"execution_mode": ExecutionMode.FAIL_FAST} if ExecutionMode.FAIL_FAST in orchestrator.supported_execution_modes else {}


def raise_step_error(run_name: str, exc: BaseException | None = None) -> None:
    """Raise a failed step's own error: ZenML's exception only says "failure in step(s)".

    A ``sentibridge.errors`` class is re-raised as itself (the user's mistake, one line). A
    tracking server or artifact store that failed the step (``exc``, the step's own exception
    where the orchestrator passes it on) is named with its cause. Anything else becomes
    ``StepFailed`` carrying the step's traceback for ``--debug``. Returns only when no step
    failed (the run failed around the steps).
    """
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    from sentibridge import errors

    try:
        run = Client().get_pipeline_run(run_name)
    except KeyError:  # the run was never created
        return
    for step in run.steps.values():
        info = step.exception_info
        if info is None and step.status != ExecutionStatus.FAILED:
            continue
        source = (info.source if info else None) or "Exception"
        name = source.rsplit(".", 1)[-1]
        cls = getattr(errors, name, None)
        if source.startswith("sentibridge.errors.") and isinstance(cls, type) and issubclass(cls, errors.SentibridgeError):
            raise cls(info.message or f"step {step.name} failed") from None
        detail = (info.traceback if info else None) or ""
        service = _service_failure(exc) if exc is not None else None
        if service is not None:
            raise StepFailed(step.name, service, detail or "".join(_format(exc)), known=True) from None
        message = info.message if info else (str(exc) if exc is not None else "")
        raise StepFailed(step.name, f"{name}: {message}" if message else name, detail) from None


def _service_failure(exc: BaseException) -> str | None:
    """One line naming the stack's tracking server or artifact store and why it failed a step; None otherwise."""
    from sentibridge.errors import describe, tracking_server_failure

    mlflow_errors = sys.modules.get("mlflow.exceptions")
    if mlflow_errors is not None and isinstance(exc, mlflow_errors.MlflowException):
        tracker = _stack_tracker()
        if tracker is None:
            return None
        uri, secret, user = tracker
        login = f"the username and password in ZenML secret '{secret}' (the stack's tracker)" if secret else "the stack's tracker"
        return tracking_server_failure(exc, uri, login=login, user=user)
    botocore = sys.modules.get("botocore.exceptions")
    storage_error = isinstance(exc, OSError) or (botocore is not None and isinstance(exc, (botocore.ClientError, botocore.BotoCoreError)))
    store = _stack_artifact_store()
    if storage_error and "://" in store:  # a remote store (s3://, gs://...); a local disk error stays as it is
        return f"artifact store {store}: {describe(exc).message}"
    return None


def _stack_tracker() -> tuple[str, str, str | None] | None:
    """The active stack's MLflow tracker: its URI, the secret its login references, and that login's user."""
    from zenml.client import Client
    from zenml.utils import secret_utils

    config = getattr(Client().active_stack.experiment_tracker, "config", None)
    if config is None or not getattr(config, "tracking_uri", None):
        return None
    # model_dump keeps the "{{secret.key}}" reference; attribute access resolves it to the value.
    raw = config.model_dump().get("tracking_username")
    secret = secret_utils.parse_secret_reference(raw).name if secret_utils.is_secret_reference(raw) else ""
    try:
        user = config.tracking_username
    except (KeyError, RuntimeError):
        user = None
    return config.tracking_uri, secret, user


def _stack_artifact_store() -> str:
    """The active artifact store's path, and its endpoint when one is configured (S3-compatible stores)."""
    from zenml.client import Client

    config = Client().active_stack.artifact_store.config
    endpoint = (getattr(config, "client_kwargs", None) or {}).get("endpoint_url")
    return f"{config.path} ({endpoint})" if endpoint else str(config.path)


def _format(exc: BaseException) -> list[str]:
    import traceback

    return traceback.format_exception(exc)


def _output(run, step: str, name: str):
    return run.steps[step].outputs[name][0].load()
