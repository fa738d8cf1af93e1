"""The one sentibridge pipeline: data preparation, then (unless ``data_only``) the model half."""

from __future__ import annotations

from zenml import pipeline

from sentibridge.config import Settings
from steps.ingest import ingest
from steps.split import split


@pipeline(enable_cache=True)
def sentibridge_pipeline(settings: Settings, data_version: dict[str, str], data_only: bool = False) -> None:
    """Ingest -> split [-> instructions -> train -> merge/register -> evaluate]."""
    valid_rows, quarantine, ingest_report = ingest(
        data_path=settings.data.path, data=settings.data, version=data_version
    )
    split(
        valid_rows=valid_rows,
        quarantine=quarantine,
        ingest_report=ingest_report,
        data=settings.data,
        split_cfg=settings.split,
    )
