"""Row validation with Great Expectations 1.x, called directly.

ZenML's GE integration supports only GE<1.0, so the suite is built and run here on an
ephemeral context. Each failing expectation names the rows it rejects; those rows go to a
quarantine table with their reasons, and the rest are valid.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType

import pandas as pd

from sentibridge.config import DataConfig
from sentibridge.errors import DataError
from sentibridge.labels import LABELS
from sentibridge.languages import is_language_code

#: Reasons in priority order: a row failing several is counted under the first.
REASONS = ("empty_text", "text_too_short", "text_too_long", "label_not_in_set", "unknown_language", "duplicate_id", "unknown_split")


@dataclass
class ValidationResult:
    """Valid rows, quarantined rows (with ``reason`` and ``reasons`` columns) and counts."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rows_valid(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)

    def summary(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_valid": self.rows_valid,
            "rows_quarantined": self.rows_quarantined,
            "quarantine_reasons": dict(self.reasons),
        }


def great_expectations() -> ModuleType:
    """``great_expectations``, imported so that an installed pyspark cannot end the process.

    GX's compatibility layer imports ``pyspark.sql.connect``, which takes a process whose
    ``__main__`` has neither a file nor a spec (``python -c``, a pytest-xdist worker) for
    pyspark's own doctest run and calls ``sys.exit(0)``: validation would end in silent success.
    ``sys.ps1`` (an interactive session) tells it otherwise for the length of the import.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    main = sys.modules.get("__main__")
    mask = not hasattr(sys, "ps1") and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__")
    if mask:
        sys.ps1 = ""
    try:
        import great_expectations as gx
    finally:
        if mask:
            del sys.ps1
    return gx


def _expectations(cfg: DataConfig) -> list[tuple[str, object]]:
    e = great_expectations().expectations
    # Texts are checked stripped: whitespace-only is empty, and padding must not pass a length bound.
    return [
        ("empty_text", e.ExpectColumnValuesToMatchRegex(column="text_stripped", regex=r"\S")),
        ("text_too_short", e.ExpectColumnValueLengthsToBeBetween(column="text_stripped", min_value=cfg.min_text_chars)),
        ("text_too_long", e.ExpectColumnValueLengthsToBeBetween(column="text_stripped", max_value=cfg.max_text_chars)),
        ("label_not_in_set", e.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(len(LABELS))))),
        ("unknown_language", e.ExpectColumnValuesToBeInSet(column="language_known", value_set=[True])),
        ("duplicate_id", e.ExpectColumnValuesToBeUnique(column="id")),
        ("unknown_split", e.ExpectColumnValuesToBeInSet(column="split", value_set=["train", "val", "test"])),
    ]


def _run_suite(frame: pd.DataFrame, cfg: DataConfig) -> dict[str, list[int]]:
    """Run the GE suite; return reason -> positional indices of the rows it rejects."""
    gx = great_expectations()
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # GE draws one bar per expectation
    batch = (
        context.data_sources.add_pandas("rows")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    expectations = _expectations(cfg)
    suite = gx.ExpectationSuite(name="sentibridge_rows")
    for reason, expectation in expectations:
        expectation.meta = {"reason": reason}  # how results find their way back to reasons
        suite.add_expectation(expectation)
    outcome = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    rejected: dict[str, list[int]] = {}
    for result in outcome.results:
        reason = result.expectation_config.meta["reason"]
        if result.exception_info and result.exception_info.get("raised_exception"):
            raise DataError(f"validation of '{reason}' could not run: {result.exception_info.get('exception_message')}")
        if not result.success:
            rejected[reason] = list(result.result.get("unexpected_index_list") or [])
    return rejected


def validate_rows(rows: pd.DataFrame, cfg: DataConfig) -> ValidationResult:
    """Split ingested rows into valid and quarantined; never drops a row."""
    frame = rows.reset_index(drop=True).copy()
    frame["text_stripped"] = frame["text"].str.strip()
    frame["language_known"] = frame["language"].map(is_language_code).astype(bool)  # the one rule for codes
    # Rows without a split are fine (split assigns them); GE's in-set check skips nulls.
    rejected = _run_suite(frame, cfg) if len(frame) else {}
    reasons_per_row: dict[int, list[str]] = {}
    for reason in REASONS:
        for index in rejected.get(reason, []):
            reasons_per_row.setdefault(int(index), []).append(reason)
    bad = sorted(reasons_per_row)
    frame = frame.drop(columns=["text_stripped", "language_known"])
    quarantine = frame.iloc[bad].copy()
    quarantine["reason"] = [reasons_per_row[i][0] for i in bad]
    quarantine["reasons"] = [";".join(reasons_per_row[i]) for i in bad]
    valid = frame.drop(index=bad).reset_index(drop=True)
    counts = quarantine["reason"].value_counts().to_dict() if len(quarantine) else {}
    result = ValidationResult(valid=valid, quarantine=quarantine.reset_index(drop=True), rows_in=len(frame), reasons=counts)
    assert result.rows_in == result.rows_valid + result.rows_quarantined  # the conservation invariant
    return result


def check_quarantine_limit(
    rows_in: int, quarantine: pd.DataFrame, cfg: DataConfig, source: str, show: int = 5
) -> None:
    """Fail with one line naming the source, the first bad rows and their reasons."""
    if rows_in == 0:
        raise DataError(f"{source}: no rows")
    fraction = len(quarantine) / rows_in
    if fraction <= cfg.max_quarantine_fraction:
        return
    first = "; ".join(f"{os.path.basename(r.source)}:{r.line} {r.reasons}" for r in quarantine.head(show).itertuples())
    raise DataError(
        f"{source}: {len(quarantine)} of {rows_in} rows quarantined ({fraction:.1%} > limit "
        f"{cfg.max_quarantine_fraction:.1%}); first: {first}"
    )
