"""The ``sentibridge`` command line.

User mistakes (bad data, bad config) print one ``error:`` line and exit 1 (data) or 2
(usage/config); with ``--json`` the last stdout line is always one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from sentibridge.config import Settings, load_settings
from sentibridge.errors import DataError, SentibridgeError


def _settings(args: argparse.Namespace) -> Settings:
    overrides = list(args.set or [])
    if getattr(args, "data", None):
        overrides.append(f"data.path={args.data}")
    return load_settings(args.config, overrides)


def _emit_json(payload: dict) -> None:
    print(json.dumps(payload, ensure_ascii=False, default=str), flush=True)


def run_pipeline(settings: Settings, data_only: bool):
    """Activate the home and stack, run the pipeline, return the ZenML run."""
    from sentibridge.dataversion import data_version
    from sentibridge.home import activate, ensure_experiment, ensure_stack, quiet

    path = Path(settings.data.path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    home = activate()
    ensure_stack(home)
    version = data_version(path).as_metadata()
    from pipelines.sentibridge_pipeline import sentibridge_pipeline

    run_name = f"sentibridge-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    options: dict = {"run_name": run_name}
    if not data_only:
        from zenml import Model

        ensure_experiment(home, settings.registry.experiment)
        options["model"] = Model(name=settings.registry.model_name, description="sentibridge sentiment model")
        options["settings"] = {"experiment_tracker": {"experiment_name": settings.registry.experiment}}
    try:
        with quiet():
            sentibridge_pipeline.with_options(**options)(settings=settings, data_version=version, data_only=data_only)
    except RuntimeError:
        _raise_step_error(run_name)
        raise
    from zenml.client import Client

    return Client().get_pipeline_run(run_name)


def _raise_step_error(run_name: str) -> None:
    """Re-raise a failed step's own user error (ZenML reports only "failure in step(s)")."""
    from zenml.client import Client

    from sentibridge import errors

    run = Client().get_pipeline_run(run_name)
    for step in run.steps.values():
        info = step.exception_info
        if info is None or not info.source:
            continue
        cls = getattr(errors, info.source.rsplit(".", 1)[-1], None)
        if info.source.startswith("sentibridge.errors.") and isinstance(cls, type):
            raise cls(info.message or f"step {step.name} failed")
        # Not a user mistake: show the step's own traceback, which quiet() kept off the log.
        print(f"step {step.name} failed:\n{info.traceback}", file=sys.stderr)


def _step_output(run, step: str, name: str):
    return run.steps[step].outputs[name][0].load()


def cmd_validate(args: argparse.Namespace) -> int:
    from sentibridge.report import data_report_text

    settings = _settings(args)
    started = time.perf_counter()
    run = run_pipeline(settings, data_only=True)
    report = _step_output(run, "split", "data_report")
    seconds = time.perf_counter() - started
    print(data_report_text(report))
    print(f"pipeline run: {run.name}  ({seconds:.1f} s)")
    if args.export:
        _export_prepared(run, report, Path(args.export))
        print(f"prepared data written to {args.export}")
    if args.json:
        _emit_json({"ok": True, "pipeline_run_id": str(run.id), "seconds": round(seconds, 2), **report})
    return 0


def _export_prepared(run, report: dict, folder: Path) -> None:
    """Write the prepared splits as Parquet (what `dvc repro` tracks as the stage output)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train_rows", "val_rows", "test_rows", "leaks"):
        _step_output(run, "split", name).to_parquet(folder / f"{name.removesuffix('_rows')}.parquet", index=False)
    _step_output(run, "ingest", "quarantine").to_parquet(folder / "quarantine.parquet", index=False)
    (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def cmd_train(args: argparse.Namespace) -> int:
    from sentibridge.report import text_table

    settings = _settings(args)
    started = time.perf_counter()
    run = run_pipeline(settings, data_only=False)
    metrics = _step_output(run, "evaluate", "metrics")
    registration = _step_output(run, "register", "registration")
    summary = _step_output(run, "train", "train_summary")
    augmentation = _step_output(run, "augment", "augmentation_report")
    seconds = time.perf_counter() - started
    added = {lang["language"]: lang["retrieved"] + lang["self_labelled"] for lang in augmentation["languages"]}
    if any(added.values()):
        print("augmented: " + ", ".join(f"{lang} +{n}" for lang, n in added.items() if n))
    rows = [[lang, v["support"], v["accuracy"], v["f1"]] for lang, v in metrics["per_language"].items()]
    rows.append(["mean", sum(r[1] for r in rows), "", metrics["f1_macro_avg"]])
    print(text_table(["language", "support", "accuracy", "macro-F1"], rows))
    print(
        f"trained {summary['steps']} steps ({summary['precision']}, {summary['tokens_per_s']:.0f} tokens/s); "
        f"registered {registration['registered_model']} version {registration['model_version']}"
    )
    print(f"pipeline run: {run.name}  mlflow run: {registration['mlflow_run_id']}  ({seconds:.0f} s)")
    if args.json:
        _emit_json(
            {
                "ok": True,
                "pipeline_run_id": str(run.id),
                "mlflow_run_id": registration["mlflow_run_id"],
                "tracking_uri": registration["tracking_uri"],
                "registered_model": registration["registered_model"],
                "model_version": registration["model_version"],
                "per_language": metrics["per_language"],
                "f1_macro_avg": metrics["f1_macro_avg"],
                "train": summary,
                "augmentation": augmentation,
                "seconds": round(seconds, 1),
            }
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentibridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML file in configs/ (overrides the defaults)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key, e.g. train.max_steps=1")
        p.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")

    validate = sub.add_parser("validate", help="ingest, validate and split a dataset (a ZenML pipeline)")
    validate.add_argument("--data", help="CSV/JSONL/Parquet file, folder of them, or TweetEval folder")
    validate.add_argument("--export", metavar="DIR", help="also write the prepared splits (Parquet) and report here")
    common(validate)
    validate.set_defaults(func=cmd_validate)

    train = sub.add_parser("train", help="run the whole pipeline: data, LoRA training, evaluation, registration")
    train.add_argument("--data", help="override data.path")
    common(train)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on usage errors
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SentibridgeError as exc:  # a failed step's own error is re-raised by run_pipeline
        print(f"error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            _emit_json({"ok": False, "error": str(exc)})
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
