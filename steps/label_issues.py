"""Label-issue step: likely label errors on every split; drop or downweight them in train only."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import log_metadata, step
from zenml.types import MarkdownString

from sentibridge.augment.embedding import embedder_function
from sentibridge.config import DataConfig, PrecisionSetting
from sentibridge.data.label_issues import FLAGGED_COLUMNS, check_labels
from sentibridge.home import resolve_home


@step
def label_issues(
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    test_rows: pd.DataFrame,
    data_report: dict,
    data: DataConfig,
    seed: int,
    embedder: str,
    embed_precision: PrecisionSetting,
) -> tuple[
    Annotated[pd.DataFrame, "checked_train_rows"],
    Annotated[pd.DataFrame, "label_issues"],
    Annotated[dict, "data_report"],
    Annotated[MarkdownString, "label_issues_view"],
]:
    """Train rows after ``data.label_issues``, the flagged rows, and the data report with their summary.

    ``embedder`` and ``embed_precision`` are ``embedding.label_issues_model`` and ``embedding.precision``.
    Embeddings go through the home's embedding cache, so a rerun on the same data embeds nothing.
    """
    embed = embedder_function(embedder, resolve_home().embeddings, precision=embed_precision)
    kept, issues, summary = check_labels(
        train_rows, val_rows, test_rows, data.label_issues, data.label_issue_weight, embed, data.label_issue_folds, seed
    )
    flagged = issues.flagged if issues is not None else pd.DataFrame(columns=FLAGGED_COLUMNS)
    counts = {"label_issues_flagged": len(flagged), "label_issues_train_rows_changed": summary.get("train_rows_changed", 0)}
    log_metadata(metadata={"mode": data.label_issues, **counts}, artifact_name="label_issues", infer_artifact=True)
    view = issues.markdown() if issues is not None else "# Label issues\n\nNot checked (`data.label_issues: off`).\n"
    return kept, flagged, {**data_report, "label_issues": summary}, MarkdownString(view)
