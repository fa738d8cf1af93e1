"""Gate step: compare the registered candidate with the champion (or the base model) and promote."""

from __future__ import annotations

from typing import Annotated

import mlflow
import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.enums import ModelStages
from zenml.types import MarkdownString

from sentibridge.registry import promotion as registry
from sentibridge import tracking
from sentibridge.model.base import resolve_base_model
from sentibridge.config import Settings
from sentibridge.registry.gate import ChampionRecord, Decision, Reference, choose_reference, gate_predictions
from sentibridge.home import resolve_home
from sentibridge.inference.predict import predict_with


def _rows_of(predictions: pd.DataFrame, test_rows: pd.DataFrame) -> pd.DataFrame:
    """The evaluated test rows, in the candidate's order."""
    by_id = test_rows.astype({"id": str}).set_index("id")
    return by_id.loc[predictions["id"].astype(str)].reset_index()


def _champion_record(version) -> ChampionRecord:
    tags = version.tags or {}
    return ChampionRecord(str(version.version), tags.get("data_version"), tags.get("test_set"))


def _reference(client, settings: Settings, rows: pd.DataFrame, data_version: str, test_set: str, champion) -> Reference:
    name = settings.registry.model_name

    def stored(record: ChampionRecord) -> pd.DataFrame | None:
        run_id = client.get_model_version(name, record.version).run_id
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/predictions.parquet")
        except Exception:  # noqa: BLE001 - an older version without stored predictions: score it again
            return None
        return pd.read_parquet(path)

    def evaluate_champion(record: ChampionRecord) -> pd.DataFrame:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{record.version}").unwrap_python_model()
        return model.predict_rows(rows)

    def evaluate_base() -> pd.DataFrame:
        base = resolve_base_model(settings.model, resolve_home().embedded_model)
        return predict_with(base, rows, settings.model, settings.train.precision, settings.eval.batch_size)

    record = _champion_record(champion) if champion is not None else None
    return choose_reference(record, data_version, test_set, stored, evaluate_champion, evaluate_base)


@step(experiment_tracker=True, enable_cache=False)
def gate(
    registration: dict, metrics: dict, predictions: pd.DataFrame, test_rows: pd.DataFrame, data_report: dict,
    settings: Settings,
) -> tuple[Annotated[dict, "decision"], Annotated[MarkdownString, "decision_view"]]:
    """Promote the candidate only if it passes ``settings.gate`` against a fresh reference."""
    name, candidate = settings.registry.model_name, registration["model_version"]
    client = registry.client()
    rows = _rows_of(predictions, test_rows)
    data_version = data_report["data_version"]

    def against(champion) -> Decision:
        reference = _reference(client, settings, rows, data_version, metrics["test_set"], champion)
        return gate_predictions(predictions, reference, settings.gate, candidate, settings.split.seed)

    champion = registry.alias_version(client, name, registry.CHAMPION)
    decision = against(champion)
    decision = registry.apply_decision(
        client, name, candidate, decision, resolve_home().root / "locks",
        redecide=lambda version: against(client.get_model_version(name, version)),
    )
    if decision.promote:
        get_step_context().model.set_stage(ModelStages.PRODUCTION, force=True)
    tracking.log_json(decision.to_dict(), "gate/decision.json")
    tracking.log_metrics({"promoted": float(decision.promote), "gate_mean_delta": decision.mean["delta"]})
    log_metadata(metadata={"promoted": decision.promote, "reasons": decision.reasons}, artifact_name="decision", infer_artifact=True)
    return decision.to_dict(), MarkdownString("# Gate decision\n\n```\n" + decision.text() + "\n```\n")
