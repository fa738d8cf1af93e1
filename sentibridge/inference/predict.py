"""Prediction on a row table: the serving prompt, label scoring, and a predictions table."""

from __future__ import annotations

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from sentibridge.model.base import load_causal_lm, load_tokenizer
from sentibridge.config import ModelConfig
from sentibridge.augment.demonstrations import DemonstrationStore, Embed, demonstrations_for
from sentibridge.model.instructions import LABEL_WORDS, SERVING_TEMPLATE, build_records
from sentibridge.model.precision import Precision, base_dtype, default_device, resolve_precision
from sentibridge.inference.scoring import score_records


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
) -> pd.DataFrame:
    """``rows`` (id, text, language[, label]) -> id, language, label, pred and one score per label.

    Uses the serving template and the model's demonstration store (if it has one), so
    evaluation scores exactly what a served model would answer.
    """
    demonstrations = demonstrations_for(rows, store, embed)
    records = build_records(rows, tokenizer, max_length, seed=0, template=SERVING_TEMPLATE, demonstrations=demonstrations)
    result = score_records(model, tokenizer, records, batch_size, device, precision, progress=progress)
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
    return out


def predict_with(
    path: str,
    rows: pd.DataFrame,
    model_cfg: ModelConfig,
    precision: str,
    batch_size: int,
    store: DemonstrationStore | None = None,
    embed: Embed | None = None,
) -> pd.DataFrame:
    """Load the model at ``path`` on the default device and ``predict_rows`` with it.

    ``precision`` is the configured setting (``auto`` resolves per device).
    """
    device = default_device()
    resolved = resolve_precision(precision, device)
    tokenizer = load_tokenizer(path, model_cfg)
    model = load_causal_lm(path, model_cfg, device, base_dtype(resolved))
    return predict_rows(model, tokenizer, rows, model_cfg.max_length, batch_size, device, resolved, store=store, embed=embed)
