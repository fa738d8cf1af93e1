"""Split step: refuse data over the quarantine limit, then dedupe, split and check leakage."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step
from zenml.types import MarkdownString

from sentibridge.augment.augmentation import holdout_keys
from sentibridge.config import DataConfig, SplitConfig
from sentibridge.data.report import data_report_markdown
from sentibridge.data.split import split_rows
from sentibridge.data.validation import check_quarantine_limit


@step
def split(
    valid_rows: pd.DataFrame,
    quarantine: pd.DataFrame,
    ingest_report: dict,
    data: DataConfig,
    split_cfg: SplitConfig,
) -> tuple[
    Annotated[pd.DataFrame, "train_rows"],
    Annotated[pd.DataFrame, "val_rows"],
    Annotated[pd.DataFrame, "test_rows"],
    Annotated[pd.DataFrame, "leaks"],
    Annotated[list[str], "holdout_keys"],
    Annotated[dict, "data_report"],
    Annotated[MarkdownString, "data_report_view"],
]:
    """Train/val/test rows, the leaked rows found, and the full data report."""
    check_quarantine_limit(
        rows_in=ingest_report["rows_in"], quarantine=quarantine, cfg=data, source=ingest_report["data_path"]
    )
    result = split_rows(valid_rows, split_cfg, data)
    report = {**ingest_report, **result.summary()}
    version = {k: ingest_report[k] for k in ("data_version", "data_version_source")}
    for name in ("train_rows", "val_rows", "test_rows"):
        log_metadata(metadata=version, artifact_name=name, infer_artifact=True)
    return (
        result.train,
        result.val,
        result.test,
        result.leaks,
        holdout_keys(result.val, result.test),
        report,
        MarkdownString(data_report_markdown(report, quarantine)),
    )
