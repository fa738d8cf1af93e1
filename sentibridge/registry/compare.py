"""Two registered versions side by side per language, on the same test rows, with intervals.

Each version's run keeps its test predictions (``artifacts.PREDICTIONS``, written by the
evaluate step); two versions are compared on the rows both scored (same id and label),
with the gate's paired bootstrap, so ``compare A B`` shows what the gate would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd

from sentibridge.artifacts import PREDICTIONS
from sentibridge.config import GateConfig
from sentibridge.errors import SentibridgeError
from sentibridge.registry.decision import Decision, interval_percent
from sentibridge.registry.gate import gate_predictions
from sentibridge.registry.reference import Reference
from sentibridge.registry.rules import interval_text, noise_text
from sentibridge.tables import text_table


@dataclass
class Comparison:
    """``b`` against ``a`` (delta = b - a, points) on ``rows`` shared test rows; ``left_out`` scored by one only."""

    a: str
    b: str
    rows: int
    left_out: int
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "rows": self.rows, "left_out": self.left_out,
                "confidence": self.decision.rule["confidence"],
                "languages": [_side_by_side(row, self.a, self.b) for row in self.decision.languages],
                "mean": _side_by_side({"language": "mean", **self.decision.mean}, self.a, self.b)}

    def text(self) -> str:
        a, b = f"v{self.a}", f"v{self.b}"
        headers = ["language", "rows", f"{a} F1", f"{b} F1", f"delta ({b} - {a})",
                   f"{interval_percent(self.decision.rule)}% interval", f"P({b} better)"]
        table = [
            [row["language"], row.get("rows") or "", 100 * row["reference"], 100 * row["candidate"], row["delta"],
             interval_text(row), row["p_better"]]
            for row in [*self.decision.languages, {"language": "mean", "rows": self.rows, **self.decision.mean}]
        ]
        noise = noise_text(self.decision.rule)
        lines = [f"{a} and {b} on the same {self.rows} test rows (F1 points; paired bootstrap intervals{noise})"]
        if self.left_out:
            lines.append(f"{self.left_out} rows scored by only one of them are left out")
        lines.append(text_table(headers, table, floatfmt=["", "", ".1f", ".1f", "+.1f", "", ".3f"]))
        return "\n".join(lines)


def _side_by_side(row: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    return {"language": row["language"], "rows": row.get("rows"), f"f1_v{a}": row["reference"], f"f1_v{b}": row["candidate"],
            "delta": row["delta"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "p_better": row["p_better"]}


def shared_rows(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The rows both prediction tables scored with the same label: (a's, b's, rows left out)."""
    keys = a[["id", "language", "label"]].merge(b[["id", "language", "label"]], on=["id", "language", "label"])
    left_out = len(a) + len(b) - 2 * len(keys)
    return a[a["id"].isin(keys["id"])], b[b["id"].isin(keys["id"])], left_out


def compare_predictions(a: pd.DataFrame, b: pd.DataFrame, rule: GateConfig, a_version: str, b_version: str) -> Comparison:
    """Compare two versions' prediction tables (``id, language, label, pred``) on their shared rows."""
    a_rows, b_rows, left_out = shared_rows(a, b)
    if b_rows.empty:
        raise SentibridgeError(
            f"v{a_version} and v{b_version} share no test rows (evaluated on different data): nothing to compare on"
        )
    decision = gate_predictions(b_rows, Reference("champion", a_version, a_rows, "stored"), rule, b_version)
    return Comparison(a_version, b_version, len(b_rows), left_out, decision)


def logged_predictions(client: mlflow.MlflowClient, name: str, version: str) -> pd.DataFrame | None:
    """The test predictions the version's run logged; None when it has none (an older version)."""
    run_id = client.get_model_version(name, version).run_id
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=PREDICTIONS)
    except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        return None
    return pd.read_parquet(path)


def stored_predictions(client: mlflow.MlflowClient, name: str, version: str) -> pd.DataFrame:
    """The test predictions the version's run logged; a clear error when it has none."""
    predictions = logged_predictions(client, name, version)
    if predictions is None:
        raise SentibridgeError(f"{name} v{version} has no stored test predictions ({PREDICTIONS})")
    return predictions


def compare_versions(client: mlflow.MlflowClient, name: str, a: str, b: str, rule: GateConfig) -> Comparison:
    return compare_predictions(stored_predictions(client, name, a), stored_predictions(client, name, b), rule, a, b)
