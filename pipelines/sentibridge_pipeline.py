"""The one sentibridge pipeline: data preparation, then (unless ``data_only``) the model half."""

from __future__ import annotations

from zenml import pipeline

from sentibridge.config import Settings
from steps.augment import augment
from steps.demonstrations import demonstrations
from steps.evaluate import evaluate
from steps.gate import gate
from steps.ingest import ingest
from steps.instructions import instructions
from steps.register import register
from steps.split import split
from steps.train import train


@pipeline(enable_cache=True)
def sentibridge_pipeline(settings: Settings, data_version: dict[str, str], data_only: bool = False) -> None:
    """Ingest -> split [-> augment -> demonstrations -> instructions -> train -> evaluate -> register -> gate].

    Evaluation runs before registration on the same merged 16-bit weights, so a registered
    version always carries its per-language scores and a failed evaluation registers nothing.
    """
    valid_rows, quarantine, ingest_report = ingest(
        data_path=settings.data.path, data=settings.data, version=data_version
    )
    train_rows, val_rows, test_rows, _leaks, holdout, data_report, _view = split(
        valid_rows=valid_rows,
        quarantine=quarantine,
        ingest_report=ingest_report,
        data=settings.data,
        split_cfg=settings.split,
    )
    if data_only:
        return
    augmented_rows, _index, _augment_report, _augment_view = augment(
        train_rows=train_rows, holdout_keys=holdout, settings=settings
    )
    store = demonstrations(train_rows=augmented_rows, settings=settings)
    train_records, val_records, _export = instructions(
        train_rows=augmented_rows, val_rows=val_rows, demonstration_store=store, model=settings.model,
        seed=settings.split.seed,
    )
    lora_adapter, train_summary = train(
        train_records=train_records, val_records=val_records, settings=settings, data_report=data_report
    )
    metrics, predictions, _eval_view = evaluate(
        lora_adapter=lora_adapter, test_rows=test_rows, demonstration_store=store, settings=settings
    )
    registration = register(
        lora_adapter=lora_adapter,
        demonstration_store=store,
        metrics=metrics,
        train_summary=train_summary,
        data_report=data_report,
        settings=settings,
    )
    gate(
        registration=registration, metrics=metrics, predictions=predictions, test_rows=test_rows,
        data_report=data_report, settings=settings,
    )
