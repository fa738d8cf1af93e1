"""Evaluation step: per-language macro-F1 of the merged 16-bit model, i.e. the weights we register."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import torch
from zenml import log_metadata, step
from zenml.types import MarkdownString

from sentibridge import tracking
from sentibridge.model.base import resolve_base_model
from sentibridge.config import EvalConfig, ModelConfig, PrecisionSetting
from sentibridge.augment.demonstrations import DemonstrationStore
from sentibridge.augment.embedding import embedder_function
from sentibridge.inference.evaluation import evaluate_predictions, plot_confusion_matrices, plot_f1_by_language, results_table
from sentibridge.registry.gate import fingerprint_rows
from sentibridge.home import resolve_home
from sentibridge.model.merge import merge_adapter
from sentibridge.model.precision import default_device, resolve_precision
from sentibridge.inference.predict import predict_with
from sentibridge.data.split import subsample_per_language


@step(experiment_tracker=True, enable_cache=False)
def evaluate(
    lora_adapter: Path,
    test_rows: pd.DataFrame,
    demonstration_store: Path,
    model_cfg: ModelConfig,
    eval_cfg: EvalConfig,
    split_seed: int,
    embed_precision: PrecisionSetting,
) -> tuple[
    Annotated[dict, "metrics"],
    Annotated[pd.DataFrame, "predictions"],
    Annotated[MarkdownString, "evaluation_view"],
]:
    """Merge the adapter, score the test split, log ``f1_<lang>``, ``accuracy_<lang>`` and plots.

    ``split_seed`` samples the capped test rows: which rows are evaluated belongs to the split.
    """
    home = resolve_home()
    base = resolve_base_model(model_cfg, home.embedded_model)
    rows = subsample_per_language(test_rows, eval_cfg.max_rows_per_language, split_seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sentibridge-eval-") as scratch:
        merged = merge_adapter(base, lora_adapter, Path(scratch) / "merged", model_cfg, dtype=torch.bfloat16)
        store = DemonstrationStore.load(demonstration_store)
        predictions = predict_with(
            str(merged), rows, model_cfg, eval_cfg.precision, eval_cfg.batch_size,
            store=store, embed=embedder_function(store.embedder, home.embeddings, precision=embed_precision),
        )
        seconds = time.perf_counter() - started
        report = evaluate_predictions(predictions["language"], predictions["label"], predictions["pred"])
        plots = Path(scratch) / "plots"
        plot_f1_by_language(report, plots)
        plot_confusion_matrices(report, plots)
        tracking.log_files(plots, "plots")
        # The gate reads these back when this version is champion and the test rows are unchanged.
        stored = Path(scratch) / "evaluation"
        stored.mkdir()
        predictions[["id", "language", "label", "pred"]].to_parquet(stored / "predictions.parquet", index=False)
        tracking.log_files(stored, "evaluation")
    tracking.log_metrics(report.metrics)
    table = results_table(report, fmt="markdown")
    tracking.log_json(report.table.to_dict(orient="records"), "evaluation/per_language.json")
    metrics = {
        "f1_macro_avg": report.metrics["f1_macro_avg"],
        "accuracy_overall": report.metrics["accuracy_overall"],
        "per_language": {
            row.language: {"f1": row.f1_macro, "accuracy": row.accuracy, "support": int(row.support)}
            for row in report.table.itertuples(index=False)
        },
        "confusion": {lang: matrix.tolist() for lang, matrix in report.confusion.items()},
        "precision": resolve_precision(eval_cfg.precision, default_device()),
        "test_set": fingerprint_rows(predictions),
        "eval_seconds": round(seconds, 2),
        "eval_rows_per_s": round(len(predictions) / seconds, 2) if seconds else None,
    }
    log_metadata(metadata=report.metrics, artifact_name="metrics", infer_artifact=True)
    return metrics, predictions, MarkdownString("# Evaluation on the test split\n\n" + table)
