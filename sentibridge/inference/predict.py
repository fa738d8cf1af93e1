"""Prediction on a row table (the serving prompt, label scoring, a predictions table), and on a
whole file, chunk by chunk.

A text longer than the model's ``max_length`` is cut to fit (``instructions.build_records``: the
prompt, demonstrations dropped first, then the text, counted in tokens) and still scored; the
``truncated`` column says which rows were cut, so a long article costs its tail, not its label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from sentibridge.model.base import load_causal_lm, load_tokenizer
from sentibridge.config import ModelConfig
from sentibridge.augment.demonstrations import DemonstrationStore, Embed, demonstrations_for
from sentibridge.labels import SCORE_COLUMNS
from sentibridge.model.instructions import LABEL_WORDS, SERVING_TEMPLATE, build_records
from sentibridge.model.precision import Precision, base_dtype, default_device, resolve_precision
from sentibridge.inference.label_calibration import calibrated
from sentibridge.inference.files import CHUNK_ROWS, INPUT_COLUMNS, PredictionWriter, iter_prediction_input
from sentibridge.inference.scoring import score_records

#: Columns of :func:`predict_file`'s output, in order.
OUTPUT_COLUMNS = ["row", "id", "text", "language", "label", "label_id", *SCORE_COLUMNS, "truncated", "error"]


def predict_rows(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    rows: pd.DataFrame,
    max_length: int,
    batch_size: int,
    device: torch.device,
    precision: Precision,
    progress: bool = True,
    store: DemonstrationStore | None = None,
    embed: Embed | None = None,
    offsets: Mapping[str, Sequence[float]] | None = None,
) -> pd.DataFrame:
    """``rows`` (id, text, language[, label]) -> id, language, label, pred, one score per label
    and ``truncated``: whether the text was cut to fit ``max_length`` tokens.

    Uses the serving template and the model's demonstration store (if it has one), so
    evaluation scores exactly what a served model would answer; ``offsets`` are the model's
    per-language label calibration (``label_calibration.py``).
    """
    demonstrations = demonstrations_for(rows, store, embed)
    records = build_records(rows, tokenizer, max_length, seed=0, template=SERVING_TEMPLATE, demonstrations=demonstrations)
    result = score_records(model, tokenizer, records, batch_size, device, precision, progress=progress)
    # build_records keeps a text that fits unchanged and decodes fewer tokens of one that does not.
    truncated = [record["input"] != str(text) for record, text in zip(records, rows["text"])]
    out = pd.DataFrame(
        {
            "id": rows["id"].astype(str).to_numpy(),
            "language": rows["language"].to_numpy(),
            "label": rows["label"].to_numpy() if "label" in rows.columns else None,
            "pred": result.preds.astype(int),
        }
    )
    for k, word in enumerate(LABEL_WORDS):
        out[f"score_{word}"] = result.probs[:, k]
    out["truncated"] = np.asarray(truncated, dtype=bool)
    return calibrated(out, offsets) if offsets else out


def load_scorer(
    path: str,
    model_cfg: ModelConfig,
    precision: str,
    batch_size: int,
    store: DemonstrationStore | None = None,
    embed: Embed | None = None,
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Load the model at ``path`` on the default device once; the returned function is
    ``predict_rows`` with it, for scoring several row tables with one load.

    ``precision`` is the configured setting (``auto`` resolves per device).
    """
    device = default_device()
    resolved = resolve_precision(precision, device)
    tokenizer = load_tokenizer(path, model_cfg)
    model = load_causal_lm(path, model_cfg, device, base_dtype(resolved))

    def score(rows: pd.DataFrame) -> pd.DataFrame:
        return predict_rows(model, tokenizer, rows, model_cfg.max_length, batch_size, device, resolved, store=store, embed=embed)

    return score


def predict_with(
    path: str,
    rows: pd.DataFrame,
    model_cfg: ModelConfig,
    precision: str,
    batch_size: int,
    store: DemonstrationStore | None = None,
    embed: Embed | None = None,
) -> pd.DataFrame:
    """Load the model at ``path`` and ``predict_rows`` with it (``load_scorer`` for one table)."""
    return load_scorer(path, model_cfg, precision, batch_size, store=store, embed=embed)(rows)


class RowPredictor(Protocol):
    """What :func:`predict_file` needs of a model, e.g. ``serving.SentimentModel``."""

    def predict_rows(self, rows: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
        """``rows`` (id, text, language) -> a table with ``pred``, the ``SCORE_COLUMNS`` and,
        optionally, ``truncated`` (bool per row; absent counts as not truncated)."""
        ...


@dataclass(frozen=True)
class PredictSummary:
    """Counts of a :func:`predict_file` run; ``first_errors`` is (row, error) of the first few bad rows.

    ``predicted + errors == rows``; ``truncated`` counts predicted rows whose text was cut to the
    model's ``max_length`` before scoring.
    """

    rows: int
    predicted: int
    errors: int
    first_errors: tuple[tuple[int, str], ...]
    truncated: int = 0

    @property
    def failed(self) -> bool:
        """No row could be labelled (an empty input is no failure): the only failed prediction job."""
        return self.rows > 0 and self.predicted == 0


def predict_file(
    model: RowPredictor,
    input_path: Path,
    output_path: Path,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = True,
    errors_shown: int = 5,
) -> PredictSummary:
    """Label ``input_path`` into ``output_path`` (formats by suffix), ``chunk_rows`` rows at a time.

    ``progress`` is passed to ``model.predict_rows`` (a bar per chunk); ``errors_shown`` bounds
    ``PredictSummary.first_errors``.

    Memory stays flat in the file size. Every input row is an output row (``OUTPUT_COLUMNS``), in
    order; rows with an ``error`` are kept unscored, so one bad row never costs the file. Until
    the last chunk is written the output lives in a temporary file, so any failure (a file
    unreadable mid-way, a model error) leaves ``output_path`` as it was.
    """
    chunks = iter_prediction_input(Path(input_path), chunk_rows=chunk_rows)  # checks the file first
    rows = predicted = truncated = 0
    errors: list[tuple[int, str]] = []
    with PredictionWriter(Path(output_path)) as writer:
        for chunk in chunks:
            labelled = label_rows(model, chunk, progress)
            writer.write(labelled)
            rows += len(chunk)
            predicted += int(labelled["label_id"].notna().sum())
            truncated += int(labelled["truncated"].sum())  # NA (unscored rows) counts as 0
            if len(errors) < errors_shown:
                bad = chunk[chunk["error"].notna()].head(errors_shown - len(errors))
                errors.extend(zip(bad["row"].tolist(), bad["error"].tolist()))
        if rows == 0:  # an empty input still gets a header, a schema or "[]"
            writer.write(label_rows(model, pd.DataFrame(columns=INPUT_COLUMNS).astype({"row": "int64"}), progress))
    return PredictSummary(
        rows=rows, predicted=predicted, errors=rows - predicted, first_errors=tuple(errors), truncated=truncated
    )


def label_rows(model: RowPredictor, rows: pd.DataFrame, progress: bool) -> pd.DataFrame:
    """``rows`` (``files.INPUT_COLUMNS``) -> ``OUTPUT_COLUMNS``, scoring only the rows without an error
    (a file's chunk, a served request, a Spark batch).

    Fixed dtypes (nullable string/Int64/boolean, float64) so every chunk writes the same Parquet schema,
    even one whose rows are all bad.
    """
    good = rows["error"].isna().to_numpy()
    label = pd.array([None] * len(rows), dtype="string")
    label_id = pd.array([None] * len(rows), dtype="Int64")
    truncated = pd.array([None] * len(rows), dtype="boolean")
    scores = np.full((len(rows), len(SCORE_COLUMNS)), np.nan)
    if good.any():
        scored = model.predict_rows(rows.loc[good, ["id", "text", "language"]].reset_index(drop=True), progress=progress)
        pred = scored["pred"].to_numpy()
        label[good] = np.asarray(LABEL_WORDS, dtype=object)[pred]
        label_id[good] = pred
        scores[good] = scored[SCORE_COLUMNS].to_numpy(dtype=np.float64)
        truncated[good] = scored["truncated"].to_numpy(dtype=bool) if "truncated" in scored.columns else False
    strings = {name: rows[name].astype("string").array for name in ("id", "text", "language", "error")}
    return pd.DataFrame(
        {
            "row": rows["row"].to_numpy(dtype=np.int64),
            **{name: strings[name] for name in ("id", "text", "language")},
            "label": label,
            "label_id": label_id,
            **{name: scores[:, k] for k, name in enumerate(SCORE_COLUMNS)},
            "truncated": truncated,
            "error": strings["error"],
        }
    )
