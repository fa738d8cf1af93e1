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

from sentibridge import artifacts, tracking
from sentibridge.model.base import resolve_base_model
from sentibridge.config import EvalConfig, ModelConfig, PrecisionSetting
from sentibridge.augment.demonstrations import DemonstrationStore
from sentibridge.augment.embedding import embedder_function
from sentibridge.inference.evaluation import evaluate_predictions, plot_confusion_matrices, plot_f1_by_language, results_table
from sentibridge.registry.gate import fingerprint_rows
from sentibridge.home import resolve_home
from sentibridge.model.merge import merge_adapter
from sentibridge.model.precision import default_device, resolve_precision
from sentibridge.inference.label_calibration import save_offsets, score_calibrated
from sentibridge.inference.predict import load_scorer
from sentibridge.data.split import subsample_per_language


@step(experiment_tracker=True, enable_cache=False)
def evaluate(
    lora_adapter: Path,
    test_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    demonstration_store: Path,
    model_cfg: ModelConfig,
    eval_cfg: EvalConfig,
    split_seed: int,
    embed_precision: PrecisionSetting,
    member: str | None = None,
) -> tuple[
    Annotated[dict, "metrics"],
    Annotated[pd.DataFrame, "predictions"],
    Annotated[MarkdownString, "evaluation_view"],
]:
    """Merge the adapter, calibrate it on the val split, score the test split, log
    ``f1_<lang>``, ``accuracy_<lang>`` and plots.

    ``split_seed`` samples the capped test (and val) rows: which rows are evaluated belongs to
    the split. With ``eval.calibration`` on, the metrics carry the offsets (register saves them
    with the model) and the raw scores' F1, so each run shows what calibration changed.
    ``member`` (a soup member, e.g. ``seed42``) prefixes the logged metrics and logs no files,
    so the members' scores sit beside the soup's in its MLflow run.
    """
    home = resolve_home()
    base = resolve_base_model(model_cfg, home.embedded_model)
    rows = subsample_per_language(test_rows, eval_cfg.max_rows_per_language, split_seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sentibridge-eval-") as scratch:
        merged = merge_adapter(base, lora_adapter, Path(scratch) / "merged", model_cfg, dtype=torch.bfloat16)
        store = DemonstrationStore.load(demonstration_store)
        embed = embedder_function(store.embedder, home.embeddings, precision=embed_precision)
        score = load_scorer(str(merged), model_cfg, eval_cfg.precision, eval_cfg.batch_size, store=store, embed=embed)
        scores = score_calibrated(
            score, rows, subsample_per_language(val_rows, eval_cfg.max_rows_per_language, split_seed),
            eval_cfg.calibration, eval_cfg.calibration_min_rows,
        )
        raw, predictions, offsets = scores.raw, scores.predictions, scores.offsets
        seconds = time.perf_counter() - started
        report = evaluate_predictions(predictions["language"], predictions["label"], predictions["pred"])
        if member is None:
            _log_files(report, predictions, offsets, eval_cfg, Path(scratch))
    raw_report = evaluate_predictions(raw["language"], raw["label"], raw["pred"]) if offsets else report
    prefix = f"{member}_" if member else ""
    logged = {**report.metrics, "f1_macro_avg_uncalibrated": raw_report.metrics["f1_macro_avg"]}
    tracking.log_metrics({f"{prefix}{k}": v for k, v in logged.items()})
    table = results_table(report, fmt="markdown")
    tracking.log_json(report.table.to_dict(orient="records"), f"{artifacts.EVALUATION}/{prefix}{artifacts.PER_LANGUAGE}")
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
        "calibration": {
            "method": eval_cfg.calibration if offsets else "none",
            "offsets": offsets,
            "val_rows": scores.val_rows,
            "uncalibrated_f1_macro_avg": raw_report.metrics["f1_macro_avg"],
            "uncalibrated_per_language": {
                row.language: row.f1_macro for row in raw_report.table.itertuples(index=False)
            },
        },
        "eval_seconds": round(seconds, 2),
        "eval_rows_per_s": round((len(predictions) + scores.val_rows) / seconds, 2) if seconds else None,
    }
    if member:
        metrics["member"] = member
    log_metadata(metadata=report.metrics, artifact_name="metrics", infer_artifact=True)
    title = f"# Soup member {member} on the test split" if member else "# Evaluation on the test split"
    return metrics, predictions, MarkdownString(f"{title}\n\n{table}")


def _log_files(report, predictions: pd.DataFrame, offsets: dict, eval_cfg: EvalConfig, scratch: Path) -> None:
    """Plots, and the predictions the gate reads back when this version is champion on unchanged rows."""
    plots = scratch / "plots"
    plot_f1_by_language(report, plots)
    plot_confusion_matrices(report, plots)
    tracking.log_files(plots, artifacts.PLOTS)
    stored = scratch / artifacts.EVALUATION
    stored.mkdir()
    predictions[["id", "language", "label", "pred"]].to_parquet(scratch / artifacts.PREDICTIONS, index=False)
    if offsets:
        save_offsets(stored, offsets, eval_cfg.calibration)
    tracking.log_files(stored, artifacts.EVALUATION)
