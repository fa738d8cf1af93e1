"""Gate step: compare the registered candidate with the champion (or the base model) and promote."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Annotated

import mlflow
import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.enums import ModelStages
from zenml.types import MarkdownString

from sentibridge.registry import promotion as registry
from sentibridge import artifacts, tracking
from sentibridge.model.base import resolve_base_model
from sentibridge.config import EvalConfig, GateConfig, ModelConfig, RegistryConfig
from sentibridge.registry.compare import logged_predictions
from sentibridge.registry.decision import Decision
from sentibridge.registry.gate import gate_predictions, rule_with_member_noise
from sentibridge.registry.reference import ChampionRecord, Reference, choose_reference
from sentibridge.home import resolve_home
from sentibridge.registry.lock import PromotionLock
from sentibridge.inference.evaluation import plot_f1_vs_reference
from sentibridge.inference.predict import predict_with


def _rows_of(predictions: pd.DataFrame, test_rows: pd.DataFrame) -> pd.DataFrame:
    """The evaluated test rows, in the candidate's order."""
    by_id = test_rows.astype({"id": str}).set_index("id")
    return by_id.loc[predictions["id"].astype(str)].reset_index()


def _champion_record(version) -> ChampionRecord:
    tags = version.tags or {}
    return ChampionRecord(str(version.version), tags.get("data_version"), tags.get("test_set"))


def _reference(
    client, name: str, model_cfg: ModelConfig, eval_cfg: EvalConfig, rows: pd.DataFrame, data_version: str, test_set: str, champion
) -> Reference:
    def stored(record: ChampionRecord) -> pd.DataFrame | None:
        return logged_predictions(client, name, record.version)  # None (an older version): score it again

    def evaluate_champion(record: ChampionRecord) -> pd.DataFrame:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{record.version}").unwrap_python_model()
        return model.predict_rows(rows)

    def evaluate_base() -> pd.DataFrame:
        cached = _base_scores_file(model_cfg, eval_cfg, rows)
        if cached.is_file():  # the base model never changes: score the same rows once per home
            return pd.read_parquet(cached)
        base = resolve_base_model(model_cfg, resolve_home().embedded_model)
        scored = predict_with(base, rows, model_cfg, eval_cfg.precision, eval_cfg.batch_size)
        cached.parent.mkdir(parents=True, exist_ok=True)
        scored.to_parquet(cached.with_suffix(".tmp"), index=False)
        cached.with_suffix(".tmp").replace(cached)
        return scored

    record = _champion_record(champion) if champion is not None else None
    return choose_reference(record, data_version, test_set, stored, evaluate_champion, evaluate_base)


def _base_scores_file(model_cfg: ModelConfig, eval_cfg: EvalConfig, rows: pd.DataFrame) -> Path:
    """Where the base model's zero-shot scores of ``rows`` are kept: keyed by the model, how it
    scores, and the rows' ids, labels and texts, so any change scores afresh."""
    key = hashlib.sha256(json.dumps(
        {"model": model_cfg.model_dump(mode="json"), "precision": eval_cfg.precision, "batch_size": eval_cfg.batch_size},
        sort_keys=True,
    ).encode())
    for row in rows[["id", "language", "label", "text"]].sort_values("id").itertuples(index=False):
        key.update(f"{row.id}\t{row.language}\t{row.label}\t{row.text}\n".encode())
    return resolve_home().root / "base-scores" / f"{key.hexdigest()[:24]}.parquet"


def _log_comparison_plot(decision: Decision, metrics: dict) -> None:
    """``gate/f1_vs_reference.png``: the two models per language, as the gate compared them."""
    reference = f"champion v{decision.champion_version}" if decision.reference == "champion" else "base model (zero-shot)"
    with tempfile.TemporaryDirectory(prefix="sentibridge-gate-") as scratch:
        plot_f1_vs_reference(
            {row["language"]: row["candidate"] for row in decision.languages},
            {row["language"]: row["reference"] for row in decision.languages},
            {language: scores["support"] for language, scores in metrics["per_language"].items()},
            Path(scratch),
            names=(f"candidate v{decision.candidate_version}", reference),
        )
        tracking.log_files(Path(scratch), artifacts.GATE)


@step(experiment_tracker=True, enable_cache=False)
def gate(
    registration: dict, metrics: dict, predictions: pd.DataFrame, test_rows: pd.DataFrame, data_report: dict,
    gate_cfg: GateConfig, model_cfg: ModelConfig, eval_cfg: EvalConfig, registry_cfg: RegistryConfig,
    member_metrics: list[dict],
) -> tuple[Annotated[dict, "decision"], Annotated[MarkdownString, "decision_view"]]:
    """Promote the candidate only if it passes ``gate_cfg`` against a fresh reference.

    ``member_metrics``: a soup's members' evaluations (empty for one model); with 3 or more,
    their measured seed spread replaces the configured one (``gate.seed_std_from_members``).
    Typed ``list[dict]``, not optional: ZenML collects a list of step outputs only for a list type.

    ``model_cfg`` and ``eval_cfg`` score the base model when there is no champion yet.
    """
    name, candidate = registry_cfg.model_name, registration["model_version"]
    client = registry.client()
    rows = _rows_of(predictions, test_rows)
    data_version = data_report["data_version"]

    rule, noise_source = rule_with_member_noise(gate_cfg, member_metrics)
    if member_metrics:
        tracking.log_json({m.get("member", str(i)): {"f1_macro_avg": m["f1_macro_avg"],
                                                      **{lang: v["f1"] for lang, v in m["per_language"].items()}}
                           for i, m in enumerate(member_metrics)}, artifacts.SOUP_MEMBER_F1)

    def against(champion) -> Decision:
        reference = _reference(client, name, model_cfg, eval_cfg, rows, data_version, metrics["test_set"], champion)
        decision = gate_predictions(predictions, reference, rule, candidate)
        decision.rule["seed_noise_source"] = noise_source
        return decision

    champion = registry.alias_version(client, name, registry.CHAMPION)
    decision = against(champion)
    decision = registry.apply_decision(
        client, name, candidate, decision, PromotionLock.of(registry_cfg, resolve_home().root),
        redecide=lambda version: against(client.get_model_version(name, version)),
    )
    if decision.promote:
        get_step_context().model.set_stage(ModelStages.PRODUCTION, force=True)
    tracking.log_json(decision.to_dict(), artifacts.DECISION)
    _log_comparison_plot(decision, metrics)
    interval = {"gate_mean_ci_low": decision.mean["ci_low"], "gate_mean_ci_high": decision.mean["ci_high"]}
    tracking.log_metrics({"promoted": float(decision.promote), "gate_mean_delta": decision.mean["delta"]}
                         | {key: value for key, value in interval.items() if value is not None})
    log_metadata(
        metadata={"promoted": decision.promote, "outcome": decision.outcome, "reasons": decision.reasons},
        artifact_name="decision", infer_artifact=True,
    )
    tracking.name_run(decision.run_name())  # last: ZenML finds the pipeline's MLflow run by its old name
    return decision.to_dict(), MarkdownString(decision.markdown())
