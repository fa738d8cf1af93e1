"""Ingest step: read, normalise and validate rows; quarantine the bad ones."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from sentibridge.config import DataConfig
from sentibridge.data.ingest import read_dataset
from sentibridge.data.validation import validate_rows


@step
def ingest(
    data_path: str, data: DataConfig, version: dict[str, str]
) -> tuple[
    Annotated[pd.DataFrame, "valid_rows"],
    Annotated[pd.DataFrame, "quarantine"],
    Annotated[dict, "ingest_report"],
]:
    """Rows that passed validation, rows that did not (with reasons), and the counts.

    ``version`` (from ``sentibridge.data.version``) is a parameter so that ZenML's cache key
    changes with the data, not only with the path.
    """
    result = validate_rows(read_dataset(data_path), data)
    report = {"data_path": data_path, **result.summary(), **version}
    log_metadata(metadata={**version, "rows": result.rows_valid}, artifact_name="valid_rows", infer_artifact=True)
    log_metadata(metadata={**version, "rows": result.rows_quarantined}, artifact_name="quarantine", infer_artifact=True)
    return result.valid, result.quarantine, report
