"""MLflow pyfunc wrapper: a DataFrame of texts in, labels and label probabilities out.

The only domain module that imports mlflow: it exists to be logged as an MLflow model.
Log it with ``artifacts={"merged_model": <folder from merge.merge_adapter>}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import torch

from sentibridge.model.base import load_causal_lm, load_tokenizer
from sentibridge.config import EmbeddingConfig, EvalConfig, ModelConfig
from sentibridge.config_loading import saved_value
from sentibridge.augment.demonstrations import load_for_model
from sentibridge.inference.label_calibration import load_offsets
from sentibridge.model.merge import read_merged_config
from sentibridge.model.precision import base_dtype, default_device, resolve_precision
from sentibridge.inference.files import check_texts
from sentibridge.inference.predict import label_rows, predict_rows
from sentibridge.labels import SCORE_COLUMNS

ARTIFACT_KEY = "merged_model"
#: Columns of the served model's answer, one row per input row.
OUTPUT_COLUMNS = ["label", "label_id", *SCORE_COLUMNS, "truncated", "error"]


class SentimentModel(mlflow.pyfunc.PythonModel):
    """Scores ``text`` (and optional ``language``, an ISO 639-1 code) against the label words.

    Output columns: ``label`` (word), ``label_id`` (0/1/2), ``score_negative``,
    ``score_neutral``, ``score_positive`` (probabilities over the three labels, summing to 1),
    ``truncated`` (the text was cut to ``max_length`` tokens) and ``error`` (why a row has no label).
    """

    def __init__(self) -> None:
        self.model = None
        self.tokenizer = None
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.max_length = ModelConfig().max_length
        self.batch_size = EvalConfig().batch_size
        self.store = None
        self.embed = None
        self.offsets: dict[str, list[float]] = {}

    def load_context(self, context: Any) -> None:
        self.load(Path(context.artifacts[ARTIFACT_KEY]))

    def load(self, folder: Path, precision: str | None = None) -> "SentimentModel":
        """Load a merged folder directly (what ``load_context`` does inside MLflow).

        Batch size and precision come from the ``eval`` section saved with the model (defaults of
        ``EvalConfig`` for a model saved without them); ``precision`` overrides the saved one.
        Demonstrations are embedded with the saved ``embedding.precision`` (``augment.embed_precision``
        in a model saved before the ``embedding`` section).
        """
        config = read_merged_config(folder)
        model_section, eval_section = config.get("model", {}), config.get("eval", {})
        self.max_length = int(model_section.get("max_length", self.max_length))
        self.batch_size = int(eval_section.get("batch_size", self.batch_size))
        precision = precision or str(eval_section.get("precision", EvalConfig().precision))
        # Weights are local; trust_remote_code stays as the run was configured.
        model_cfg = ModelConfig(
            base=str(folder), max_length=self.max_length, trust_remote_code=bool(model_section.get("trust_remote_code", False))
        )
        self.device = default_device()
        self.precision = resolve_precision(precision, self.device)
        self.tokenizer = load_tokenizer(str(folder), model_cfg)
        self.model = load_causal_lm(str(folder), model_cfg, self.device, base_dtype(self.precision))
        embed_precision = str(saved_value(config, "embedding.precision", EmbeddingConfig().precision))
        self.store, self.embed = load_for_model(folder, embed_precision)
        self.offsets = load_offsets(folder)
        return self

    def predict_rows(self, rows: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
        """``predict.predict_rows`` with this model, its prompt settings and its demonstrations."""
        if self.model is None:
            raise RuntimeError("SentimentModel used before load_context/load")
        return predict_rows(
            self.model, self.tokenizer, rows, self.max_length, self.batch_size, self.device, self.precision,
            progress=progress, store=self.store, embed=self.embed, offsets=self.offsets,
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One output row per input row: a row whose text is empty, missing or not a string, or
        whose language is not an ISO 639-1 code, gets an ``error`` and no label (the rest are
        labelled), as in ``sentibridge predict``. A request without a ``text`` column fails."""
        if "text" not in model_input.columns:
            raise ValueError("input needs a 'text' column")
        languages = model_input["language"].tolist() if "language" in model_input.columns else None
        labelled = label_rows(self, check_texts(model_input["text"].tolist(), languages), progress=False)
        out = labelled[OUTPUT_COLUMNS].set_axis(model_input.index)
        # Plain Python values and None, not pandas' NA: what MLflow's JSON encoder and Arrow (Spark) take.
        return out.astype(object).where(out.notna(), None)
