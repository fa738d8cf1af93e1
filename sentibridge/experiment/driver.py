"""``sentibridge experiment`` at the edges: each run is a pipeline run, the grid one MLflow parent run.

Every recipe x seed runs the whole pipeline (``pipelines.run.train``) in the active home, so
runs share the data version, ZenML's cache of the data steps and the test rows. Their models
register under an experiment-only name (``<model>-experiment-<name>``) in an experiment-only
MLflow experiment, so an experiment never promotes the production model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentibridge.config import Settings
from sentibridge.experiment.analysis import MEAN, analyse, markdown
from sentibridge.experiment.grid import Outcome, Runner, collect, run_grid
from sentibridge.experiment.plan import Plan

STATE = "experiment.json"


def isolated(settings: Settings, plan: Plan) -> Settings:
    """``settings`` registering under the experiment's own model and MLflow experiment."""
    out = settings.model_copy(deep=True)
    out.registry.model_name = f"{settings.registry.model_name}-experiment-{plan.name}"
    out.registry.experiment = f"{settings.registry.experiment}-experiment-{plan.name}"
    return out


def pipeline_runner(plan: Plan, run_config: Path | None) -> Runner:
    """Runs one recipe x seed as one pipeline run (on a remote stack, one run of its orchestrator)."""

    def run_one(settings: Settings) -> Outcome:
        from pipelines import run

        result = run.train(isolated(settings, plan), run_config=run_config)
        return Outcome(
            predictions=result.predictions,
            per_language={lang: v["f1"] for lang, v in result.metrics["per_language"].items()},
            f1_macro_avg=result.metrics["f1_macro_avg"],
            mlflow_run_id=result.registration.get("mlflow_run_id"),
            run_name=result.run_name,
            extra={"model_version": result.registration.get("model_version"),
                   "train_seconds": result.train_summary.get("train_seconds"),
                   "uncalibrated_f1_macro_avg": (result.metrics.get("calibration") or {}).get("uncalibrated_f1_macro_avg"),
                   # As the train step ran them (on a remote stack, not this machine): CPUs with and
                   # without native bf16 train at different precisions, a confound between runs.
                   "device": result.train_summary.get("device"), "train_precision": result.train_summary.get("precision")},
        )

    return run_one


def run_experiment(
    plan: Plan, out: Path, effect: float, run_config: Path | None = None, report_only: bool = False,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Run (or resume) the grid, then write ``report.json``, ``report.md`` and the MLflow parent run.

    Ctrl-C keeps the finished runs and still writes the report of what finished.
    """
    out.mkdir(parents=True, exist_ok=True)
    cells = len(plan.grid())
    print(f"experiment {plan.name}: {len(plan.recipes)} recipes x {len(plan.seeds)} seeds "
          f"({', '.join(map(str, plan.seeds))}) = {cells} runs; runs and report in {out}", flush=True)
    interrupted: KeyboardInterrupt | None = None
    if report_only:
        records = collect(plan, out)
    else:
        try:
            records = run_grid(plan, out, runner or pipeline_runner(plan, run_config),
                               report=lambda line: print(line, flush=True))
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM as ``Terminated``: re-raised as itself below
            interrupted, records = stop, collect(plan, out)
    settings = isolated(plan.recipes[0].settings(plan.seeds[0]), plan)
    report = {"name": plan.name, "seeds": list(plan.seeds), "recipes_planned": [r.name for r in plan.recipes],
              **analyse(records, out, plan.recipes[0].name, settings.gate, effect)}
    report["complete"] = sum(r.ok for r in records) == cells
    files = [out / "report.json", out / "report.md"]
    files[0].write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    files[1].write_text(markdown(report), encoding="utf-8")
    if runner is None:
        report["mlflow_parent_run_id"] = _log_parent(out, plan, settings, records, report, files)
    print(markdown(report))
    print(f"report: {files[1]} and {files[0]}")
    if interrupted is not None:
        raise interrupted
    return report


def _log_parent(out: Path, plan: Plan, settings: Settings, records, report: dict, files: list[Path]) -> str | None:
    """The parent run (reused across resumes, its id kept in ``experiment.json``)."""
    children = [r.mlflow_run_id for r in records if r.ok and r.mlflow_run_id]
    if not children:
        return None
    from sentibridge import tracking
    from sentibridge.home import activate
    from sentibridge.registry import promotion
    from sentibridge.stack import ensure_experiment

    state_file = out / STATE
    state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
    home = activate()
    # A report in a home whose runs were logged elsewhere creates the experiment here: on the local
    # store its artifacts go under the home, not into ./mlruns of the working folder.
    ensure_experiment(home, settings.registry.experiment)
    client = promotion.client(home.tracking_uri)
    metrics = {f"f1_{recipe}": summary["per_language"][MEAN]["f1"] for recipe, summary in report["recipes"].items()
               if summary["per_language"].get(MEAN, {}).get("f1") is not None}
    parent = tracking.log_experiment(client, settings.registry.experiment, plan.name, state.get("mlflow_parent_run_id"),
                                     children, metrics, files)
    state_file.write_text(json.dumps({**state, "mlflow_parent_run_id": parent}, indent=1) + "\n", encoding="utf-8")
    return parent
