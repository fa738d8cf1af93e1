"""Augmentation step: retrieval neighbours (and optionally self-labelled pool rows) for
low-resource languages; the FAISS index and the per-language report are its artifacts."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
from zenml import log_metadata, step
from zenml.types import MarkdownString

from materializers.vector_index import VectorIndexMaterializer
from sentibridge import tracking
from sentibridge.augment.augmentation import ORIGINS, augment_train, report_markdown
from sentibridge.config import AugmentConfig, EvalConfig, ModelConfig, PrecisionSetting
from sentibridge.augment.embedding import embedder_function
from sentibridge.home import resolve_home
from sentibridge.data.ingest import read_unlabelled
from sentibridge.augment.retrieval import VectorIndex


def _labeler(name: str, model_cfg: ModelConfig, eval_cfg: EvalConfig):
    """Pool rows -> (N, 3) label probabilities from model ``name`` (loaded on first use)."""
    from sentibridge.model.base import resolve_base_model
    from sentibridge.inference.predict import predict_with

    def label(pool: pd.DataFrame) -> np.ndarray:
        path = resolve_base_model(model_cfg, resolve_home().embedded_model) if name == "base" else name
        scored = predict_with(path, pool, model_cfg, eval_cfg.precision, eval_cfg.batch_size)
        return scored[["score_negative", "score_neutral", "score_positive"]].to_numpy()

    return label


@step(experiment_tracker=True, enable_cache=False, output_materializers={"retrieval_index": VectorIndexMaterializer})
def augment(
    train_rows: pd.DataFrame,
    holdout_keys: list[str],
    augment_cfg: AugmentConfig,
    embedder: str,
    embed_batch_size: int,
    embed_precision: PrecisionSetting,
    model_cfg: ModelConfig,
    eval_cfg: EvalConfig,
) -> tuple[
    Annotated[pd.DataFrame, "augmented_train_rows"],
    Annotated[VectorIndex, "retrieval_index"],
    Annotated[dict, "augmentation_report"],
    Annotated[MarkdownString, "augmentation_view"],
]:
    """Augment the train split only; val and test reach this step as hashes (``holdout_keys``).

    ``embedder``, ``embed_batch_size`` and ``embed_precision`` are ``embedding.model``,
    ``embedding.batch_size`` and ``embedding.precision``; ``model_cfg`` and ``eval_cfg`` are for the
    self-alignment labeler, which scores like evaluation.
    """
    cfg = augment_cfg
    embed = embedder_function(embedder, resolve_home().embeddings, embed_batch_size, embed_precision)

    pool = read_unlabelled(cfg.self_alignment.pool_path) if cfg.enabled and cfg.self_alignment.enabled else None
    labeler = _labeler(cfg.self_alignment.labeler, model_cfg, eval_cfg) if pool is not None else None
    result = augment_train(train_rows, embed, cfg, holdout_keys, pool, labeler, cfg.seed, embedder=embedder)
    report = result.report
    tracking.log_table(report, "augmentation/report.json")
    totals = {f"augment_{origin}_rows": int(result.rows["origin"].eq(origin).sum()) for origin in ORIGINS}
    tracking.log_metrics(totals)
    log_metadata(metadata=totals, artifact_name="augmented_train_rows", infer_artifact=True)
    view = MarkdownString("# Augmentation\n\n" + report_markdown(report))
    records = report.astype(object).where(report.notna(), None).to_dict(orient="records")
    return result.rows, result.index, {"languages": records, **totals}, view
