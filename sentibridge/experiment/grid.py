"""Run every recipe x seed of a plan, one after another, keeping each finished run on disk.

Each run is a folder ``runs/<recipe>/seed<seed>/`` with ``result.json`` and the test
predictions (``predictions.parquet``). A rerun reuses a finished run whose resolved settings
are unchanged, so an interrupted grid (Ctrl-C, a lost session) picks up where it stopped.
A run that fails is recorded with its error and the grid goes on; the next rerun retries it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sentibridge.config import Settings
from sentibridge.experiment.plan import Plan, settings_digest

RESULT = "result.json"
PREDICTIONS = "predictions.parquet"


@dataclass(frozen=True)
class Outcome:
    """What one pipeline run hands back: test predictions (``id, language, label, pred``) and ids."""

    predictions: pd.DataFrame
    per_language: dict[str, float]
    f1_macro_avg: float
    mlflow_run_id: str | None = None
    run_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: Trains and evaluates one recipe at one seed (the real one runs the ZenML pipeline).
Runner = Callable[[Settings], Outcome]


@dataclass
class RunRecord:
    """One recipe x seed: ``ok`` or ``failed`` (with ``error``), and whether it was reused."""

    recipe: str
    seed: int
    status: str
    digest: str
    seconds: float = 0.0
    per_language: dict[str, float] = field(default_factory=dict)
    f1_macro_avg: float | None = None
    mlflow_run_id: str | None = None
    run_name: str | None = None
    error: str | None = None
    reused: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def folder(self, out: Path) -> Path:
        return run_folder(out, self.recipe, self.seed)

    def predictions(self, out: Path) -> pd.DataFrame:
        return pd.read_parquet(self.folder(out) / PREDICTIONS)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "reused"}


def run_folder(out: Path, recipe: str, seed: int) -> Path:
    return out / "runs" / recipe / f"seed{seed}"


def finished(out: Path, recipe: str, seed: int, digest: str) -> RunRecord | None:
    """The stored run of ``recipe`` at ``seed`` if it finished with these settings, else None."""
    folder = run_folder(out, recipe, seed)
    try:
        payload = json.loads((folder / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if payload.get("status") != "ok" or payload.get("digest") != digest or not (folder / PREDICTIONS).is_file():
        return None
    return RunRecord(**payload, reused=True)


def run_grid(
    plan: Plan, out: Path, runner: Runner, report: Callable[[str], None] = print,
) -> list[RunRecord]:
    """Run (or reuse) every recipe x seed; one progress line each through ``report``.

    A failing run is recorded and the others go on. Ctrl-C stops at once: finished runs stay
    on disk and the ``KeyboardInterrupt`` reaches the caller.
    """
    records: list[RunRecord] = []
    grid = plan.grid()
    for index, (recipe, seed) in enumerate(grid, start=1):
        settings = recipe.settings(seed)
        digest = settings_digest(settings)
        prefix = f"[{index}/{len(grid)}] {recipe.name} seed {seed}:"
        record = finished(out, recipe.name, seed, digest)
        if record is None:
            record = _run_one(recipe.name, seed, settings, digest, out, runner)
        records.append(record)
        report(f"{prefix} {describe(record)}")
    return records


def collect(plan: Plan, out: Path) -> list[RunRecord]:
    """The stored state of every cell: finished runs, failed ones as recorded, in plan order.

    Lets an interrupted grid still write its report, and ``--report-only`` rebuild it.
    """
    records = []
    for recipe, seed in plan.grid():
        digest = settings_digest(recipe.settings(seed))
        record = finished(out, recipe.name, seed, digest)
        if record is None:
            try:
                payload = json.loads((run_folder(out, recipe.name, seed) / RESULT).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if payload.get("digest") != digest:
                continue
            record = RunRecord(**payload, reused=True)
        records.append(record)
    return records


def describe(record: RunRecord) -> str:
    """One line: the mean F1 and the weakest language, or the error."""
    if not record.ok:
        return f"failed after {record.seconds:.0f} s: {record.error}"
    worst = min(record.per_language, key=record.per_language.get) if record.per_language else None
    weakest = f", weakest {worst} {100 * record.per_language[worst]:.1f}" if worst else ""
    source = "reused" if record.reused else f"in {record.seconds / 60:.1f} min"
    return f"mean F1 {100 * (record.f1_macro_avg or 0):.1f}{weakest} ({source})"


def _run_one(recipe: str, seed: int, settings: Settings, digest: str, out: Path, runner: Runner) -> RunRecord:
    folder = run_folder(out, recipe, seed)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        outcome = runner(settings)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one run is reported and the grid goes on
        record = RunRecord(recipe, seed, "failed", digest, time.perf_counter() - started, error=_one_line(exc))
    else:
        outcome.predictions[["id", "language", "label", "pred"]].to_parquet(folder / PREDICTIONS, index=False)
        record = RunRecord(
            recipe, seed, "ok", digest, time.perf_counter() - started, dict(outcome.per_language),
            outcome.f1_macro_avg, outcome.mlflow_run_id, outcome.run_name, extra=dict(outcome.extra),
        )
    tmp = folder / f"{RESULT}.tmp"
    tmp.write_text(json.dumps(record.to_dict(), indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(folder / RESULT)  # atomic: a half-written result is never taken as finished
    return record


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
