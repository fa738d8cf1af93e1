"""The ``sentibridge`` command line.

Every failure prints one ``error:`` line on stderr and exits 1 (data or runtime) or 2
(usage/config); with ``--json`` the last stdout line is always one JSON object. ``--debug``
(or ``SENTIBRIDGE_DEBUG=1``) also prints the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sentibridge.config import Settings
from sentibridge.config_loading import load_settings
from sentibridge.errors import ConfigError, DataError, SentibridgeError, Terminated, describe, reader_left

if TYPE_CHECKING:
    from sentibridge.data.version import DataVersion


def _settings(args: argparse.Namespace) -> Settings:
    overrides = list(args.set or [])
    if getattr(args, "data", None):
        overrides.append(f"data.path={args.data}")
    return load_settings(args.config, overrides)


def _at_revision(settings: Settings, args: argparse.Namespace) -> tuple[Settings, DataVersion | None]:
    """With ``--data-rev``: settings that read ``data.path`` as of that git revision, and its version."""
    if not getattr(args, "data_rev", None):
        return settings, None
    from pipelines import run

    return run.at_revision(settings, args.data_rev)


def _positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse turns the error into one usage line)."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return int(value)


def _emit_json(payload: dict) -> None:
    print(json.dumps(payload, ensure_ascii=False, default=str), flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    from pipelines import run
    from sentibridge.data.report import data_report_text

    settings, version = _at_revision(_settings(args), args)
    result = run.validate(settings, prepared=bool(args.export), version=version)
    print(data_report_text(result.data_report))
    print(f"pipeline run: {result.run_name}  ({result.seconds:.1f} s)")
    if args.export:
        result.export(Path(args.export))
        print(f"prepared data written to {args.export}")
    if args.json:
        _emit_json({"ok": True, "pipeline_run_id": result.run_id, "seconds": round(result.seconds, 2), **result.data_report})
    return 0


def _train(settings: Settings, version: DataVersion | None = None, run_config: Path | None = None) -> dict:
    """Run the whole pipeline, print its tables and the gate decision; return the JSON fields."""
    from pipelines import run

    result = run.train(settings, version, run_config)
    print(result.text())
    return result.payload()


def cmd_train(args: argparse.Namespace) -> int:
    settings, version = _at_revision(_settings(args), args)
    run_config = Path(args.run_config) if args.run_config else None
    if run_config is not None:
        from pipelines import run

        cron = run.run_config_cron(run_config)
        if cron:  # ZenML's meaning of a run config with a schedule: register it, run later
            run.schedule(settings, None, run_config)
            print(f"scheduled the pipeline with {run_config}: {cron} (the orchestrator runs it; nothing ran now)")
            if args.json:
                _emit_json({"ok": True, "scheduled": cron, "run_config": str(run_config)})
            return 0
    payload = _train(settings, version, run_config)
    if args.json:
        _emit_json(payload)
    return 0


def _registry(settings: Settings):
    """(MLflow client, model name, promotion lock) of the active home."""
    from sentibridge.registry import promotion as registry
    from sentibridge.home import activate
    from sentibridge.registry.lock import PromotionLock

    home = activate()
    return registry.client(home.tracking_uri), settings.registry.model_name, PromotionLock.of(settings.registry, home.root)


def cmd_retrain(args: argparse.Namespace) -> int:
    from sentibridge.registry import promotion as registry
    from sentibridge.data.version import data_version
    from sentibridge.schedule import retrain_reason

    settings, version = _at_revision(_settings(args), args)
    path = Path(settings.data.path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    client, name, _ = _registry(settings)
    champion = registry.alias_version(client, name, registry.CHAMPION)
    version = version or data_version(path)
    ran, reason = retrain_reason(
        version.md5,
        str(champion.version) if champion is not None else None,
        (champion.tags or {}).get("data_version") if champion is not None else None,
        args.if_data_changed,
        args.force,
    )
    print(f"retrain: {'running' if ran else 'skipped'}: {reason}", flush=True)
    payload = {"ran": ran, "reason": reason}
    if ran:
        payload.update(_train(settings, version))
    if args.json:
        _emit_json({"ok": True, **payload})
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from sentibridge.registry import promotion as registry

    client, name, _ = _registry(_settings(args))
    versions = registry.list_versions(client, name)
    if args.json:
        _emit_json({"ok": True, "registered_model": name, "versions": versions})
    elif not versions:
        print(f"no versions of {name} yet: run `sentibridge train`")
    else:
        print(registry.versions_text(versions))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from sentibridge.registry import promotion as registry
    from sentibridge.registry.compare import compare_versions

    settings = _settings(args)
    client, name, _ = _registry(settings)
    for version in (args.a, args.b):
        registry.require_version(client, name, version)
    comparison = compare_versions(client, name, str(args.a), str(args.b), settings.gate)
    print(comparison.text())
    if args.json:
        _emit_json({"ok": True, "registered_model": name, **comparison.to_dict()})
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from sentibridge.experiment.driver import run_experiment
    from sentibridge.experiment.plan import check_plan, parse_seeds, plan_from_configs, plan_from_file

    if bool(args.plan) == bool(args.configs):
        raise ConfigError("experiment takes either --config files (one recipe each) or one --plan file")
    seeds = parse_seeds(args.seeds) if args.seeds else None
    if args.plan:
        plan = plan_from_file(Path(args.plan), args.set or [], seeds, args.name)
    else:
        plan = plan_from_configs([Path(c) for c in args.configs], args.set or [], seeds or parse_seeds(3), args.name)
    check_plan(plan)  # every recipe validated before anything trains
    out = Path(args.out) if args.out else Path("experiments") / plan.name
    run_config = Path(args.run_config) if args.run_config else None
    report = run_experiment(plan, out, args.effect, run_config, report_only=args.report_only)
    if args.json:
        _emit_json({"ok": True, "name": plan.name, "out": str(out), **report})
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from sentibridge.registry import promotion as registry

    settings = _settings(args)
    client, name, locks = _registry(settings)
    previous = registry.promote(client, name, args.version, args.reason, locks)
    stage = _zenml_production(settings, args.version)
    print(f"{name} v{args.version} is champion (was {'v' + previous if previous else 'none'}); reason logged: {args.reason}{stage}")
    if args.json:
        _emit_json({"ok": True, "champion": args.version, "previous": previous, "reason": args.reason})
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from sentibridge.registry import promotion as registry

    settings = _settings(args)
    client, name, locks = _registry(settings)
    old, new = registry.rollback(client, name, locks, reason=args.reason)
    stage = _zenml_production(settings, new)
    print(f"{name}: champion rolled back from v{old} to v{new}; v{old} is challenger{stage}")
    if args.json:
        _emit_json({"ok": True, "champion": new, "rolled_back": old})
    return 0


def _zenml_production(settings: Settings, version: str) -> str:
    """Keep the ZenML Model's production stage on the MLflow champion (text for the message)."""
    from sentibridge.console import quiet
    from sentibridge.home import resolve_home
    from sentibridge.registry.promotion import set_zenml_production
    from sentibridge.stack import ensure_stack

    ensure_stack(resolve_home())
    with quiet():
        zenml_version = set_zenml_production(settings.registry.model_name, version)
    return f"; ZenML model version {zenml_version} is in production" if zenml_version else ""


def cmd_predict(args: argparse.Namespace) -> int:
    import mlflow

    from sentibridge.inference.files import iter_prediction_input
    from sentibridge.inference.predict import predict_file
    from sentibridge.registry import promotion as registry

    settings = _settings(args)
    if args.engine == "local":
        if args.spark_master or args.partitions:
            raise SentibridgeError("--spark-master and --partitions go with --engine spark")
        iter_prediction_input(Path(args.input))  # a missing file or text column fails before the model loads
    client, name, _ = _registry(settings)
    version = registry.resolve_version(client, name, args.model)
    if args.engine == "spark":
        from sentibridge.inference import spark

        summary = spark.predict_on(args.spark_master, f"models:/{name}/{version}", args.input, args.output, args.partitions)
        cut = "the model's max_length"
    else:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
        summary = predict_file(model, Path(args.input), Path(args.output), progress=not args.json)
        cut = f"the model's max_length ({model.max_length} tokens)"
    print(f"predicted {summary.predicted} rows with {name} v{version} -> {args.output}"
          + (f"; {summary.truncated} truncated to {cut}" if summary.truncated else "")
          + (f"; {summary.errors} rows kept with an error" if summary.errors else ""))
    for row, error in summary.first_errors:
        print(f"  row {row}: {error}")
    # One bad row costs that row; only an input where no row could be labelled fails (exit 1).
    if summary.failed:
        print(f"error: no row of {args.input} could be labelled ({summary.errors} rows with an error)",
              file=sys.stderr, flush=True)
    if args.json:
        _emit_json({"ok": not summary.failed, "model_version": version, "rows": summary.rows,
                    "predicted": summary.predicted, "errors": summary.errors, "truncated": summary.truncated,
                    "output": str(args.output)})
    return 1 if summary.failed else 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from sentibridge import schedule
    from sentibridge.home import resolve_home

    expr = schedule.validate_cron(args.cron) if args.cron else None
    home = resolve_home()
    workdir = Path.cwd()
    if args.remove:
        removed = schedule.remove_cron_line(workdir)
        print("removed this project's crontab entry" if removed else "this project has no crontab entry")
        return 0
    if expr is None:
        raise ConfigError("schedule needs --cron EXPR (or --remove)")
    settings = _settings(args)  # a bad config fails now, not at 3 am
    command = schedule.retrain_command(args.config, args.set or [])
    line = schedule.cron_line(expr, workdir, command, home.root / "logs" / "retrain.log", {"SENTIBRIDGE_HOME": str(home.root)})
    if args.print:
        print(line)
        return 0
    from sentibridge.home import activate
    from sentibridge.stack import ensure_stack

    ensure_stack(activate())
    supported, flavor = schedule.orchestrator_supports_schedules()
    if supported:
        from pipelines import run

        run.schedule(settings, schedule.zenml_schedule(expr))
        print(f"scheduled the pipeline on the {flavor} orchestrator: {expr}")
        mode = "zenml"
    else:
        (home.root / "logs").mkdir(parents=True, exist_ok=True)
        _, replaced = schedule.install_cron_line(line)
        print(
            f"the {flavor} orchestrator has no schedules, so a crontab entry runs "
            f"`sentibridge retrain --if-data-changed` instead ({'replaced' if replaced else 'installed'}):\n{line}"
        )
        mode = "cron"
    if args.json:
        _emit_json({"ok": True, "mode": mode, "cron": expr, "orchestrator": flavor, "line": line if mode == "cron" else None})
    return 0


_DATA_REV_HELP = "read data.path as of this git revision through DVC (from the DVC remote when not cached)"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors through ``main``'s error boundary (exit 2, JSON line)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        raise ConfigError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sentibridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML file in configs/ (overrides the defaults)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key, e.g. train.max_steps=1")
        p.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
        p.add_argument("--debug", action="store_true", help="print the traceback of a failure (also SENTIBRIDGE_DEBUG=1)")

    validate = sub.add_parser("validate", help="ingest, validate and split a dataset (a ZenML pipeline)")
    validate.add_argument("--data", help="CSV/JSONL/Parquet file, folder of them, or TweetEval folder")
    validate.add_argument("--data-rev", metavar="REV", help=_DATA_REV_HELP)
    validate.add_argument("--export", metavar="DIR", help="also write the prepared splits (Parquet) and report here")
    common(validate)
    validate.set_defaults(func=cmd_validate)

    train = sub.add_parser("train", help="run the whole pipeline: data, LoRA training, evaluation, registration, gate")
    train.add_argument("--data", help="override data.path")
    train.add_argument("--data-rev", metavar="REV", help=_DATA_REV_HELP)
    train.add_argument(
        "--run-config", metavar="FILE",
        help="ZenML run config for the stack, e.g. configs/stacks/kubernetes.yaml (step operators, resources, "
        "Docker, schedule); with a schedule the pipeline is scheduled instead of run",
    )
    common(train)
    train.set_defaults(func=cmd_train)

    retrain = sub.add_parser("retrain", help="train again, or only when the DVC data version changed")
    retrain.add_argument("--data", help="override data.path")
    retrain.add_argument("--data-rev", metavar="REV", help=_DATA_REV_HELP)
    retrain.add_argument("--if-data-changed", action="store_true", help="skip when the champion was trained on this data version")
    retrain.add_argument("--force", action="store_true", help="run even when the data did not change")
    common(retrain)
    retrain.set_defaults(func=cmd_retrain)

    models = sub.add_parser("models", help="list registered versions with aliases and scores")
    common(models)
    models.set_defaults(func=cmd_models)

    compare = sub.add_parser("compare", help="two versions side by side per language, on the same test rows, with intervals")
    compare.add_argument("a", help="version shown first (the reference of the deltas)")
    compare.add_argument("b", help="version compared with it (delta = b - a)")
    common(compare)
    compare.set_defaults(func=cmd_compare)

    experiment = sub.add_parser(
        "experiment", help="compare recipes over several training seeds: per-language differences with intervals"
    )
    experiment.add_argument("--config", dest="configs", action="append", metavar="FILE",
                            help="a recipe (repeat; the first is the reference)")
    experiment.add_argument("--plan", metavar="FILE", help="one YAML listing a base config and its variants")
    experiment.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key in every recipe")
    experiment.add_argument("--seeds", help="how many training seeds (3: 42,7,123) or a list (42,7); default 3")
    experiment.add_argument("--name", help="the experiment's name (default: the recipes' names)")
    experiment.add_argument("--out", metavar="DIR", help="runs and report (default experiments/<name>); rerun to resume")
    experiment.add_argument("--effect", type=float, default=1.0,
                            help="difference in points whose 'seeds needed' is reported (default 1)")
    experiment.add_argument("--report-only", action="store_true", help="write the report of the finished runs, train nothing")
    experiment.add_argument("--run-config", metavar="FILE", help="ZenML run config for the stack, as for train")
    experiment.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    experiment.add_argument("--debug", action="store_true", help="print the traceback of a failure")
    experiment.set_defaults(func=cmd_experiment)

    promote = sub.add_parser("promote", help="make a version champion by hand (logged with its reason)")
    promote.add_argument("version")
    promote.add_argument("--reason", required=True, help="why; kept on the version")
    common(promote)
    promote.set_defaults(func=cmd_promote)

    rollback = sub.add_parser("rollback", help="give the champion alias back to the version it replaced")
    rollback.add_argument("--reason", help="why; kept in both versions' descriptions")
    common(rollback)
    rollback.set_defaults(func=cmd_rollback)

    predict = sub.add_parser("predict", help="label a CSV/TSV/JSONL/Parquet/txt file with a registered model")
    predict.add_argument("--input", required=True,
                         help="CSV/TSV/JSONL/Parquet/txt file or folder; a 'text' column and an optional 'language'")
    predict.add_argument("--output", required=True,
                         help="CSV/TSV/JSONL/JSON/Parquet, by suffix (--engine spark: a new folder of Parquet files)")
    predict.add_argument("--model", default="champion", help="'champion' (default) or a version number")
    predict.add_argument("--engine", choices=("local", "spark"), default="local",
                         help="local: this process (default); spark: mlflow.pyfunc.spark_udf on a Spark cluster")
    predict.add_argument("--spark-master", default=None, help="with --engine spark: a Spark master URL (default local[*])")
    predict.add_argument("--partitions", type=_positive_int, default=None,
                         help="with --engine spark: row ranges scored in parallel, each loading the model once "
                              "(default: one per task slot)")
    common(predict)
    predict.set_defaults(func=cmd_predict)

    sched = sub.add_parser("schedule", help="retrain on a cron schedule (crontab locally, ZenML Schedule on remote stacks)")
    sched.add_argument("--cron", help='e.g. "0 3 * * 1" (Mondays at 03:00)')
    sched.add_argument("--print", action="store_true", help="print the crontab line instead of installing it")
    sched.add_argument("--remove", action="store_true", help="remove this project's crontab entry")
    common(sched)
    sched.set_defaults(func=cmd_schedule)
    return parser


def _end_progress_bars() -> None:
    """End the bars an interrupt left open, so that the error starts a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's timeout, a pod's eviction) stops a command as Ctrl-C does.

    Python's default ends the process on the spot, and inside a pipeline step ZenML turns the
    signal into that step's failure, after which ``experiment`` went on with its next run.
    ZenML's step handler calls the handler it replaced, so raising ``Terminated`` here unwinds
    every command through its Ctrl-C path: finished runs kept, a grid's report written.
    """
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Parse, run one command, and turn any failure into one line (the only error boundary)."""
    argv = sys.argv[1:] if argv is None else argv
    # MLflow's INFO lines ("Creating initial MLflow database tables...") and download bars are
    # not what a command's user asked for; its warnings and errors still show. A user's own
    # setting wins. ZenML's console lines are filtered where pipelines run (console.quiet).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = None
    try:
        args = build_parser().parse_args(argv)
        with sigterm_interrupts():
            exit_code = args.func(args)
        sys.stdout.flush()  # here, so that a reader that left (`| head`) is seen below, not at exit
        return exit_code
    except KeyboardInterrupt as stop:
        _end_progress_bars()
        # 143: what a shell reports for a command stopped by SIGTERM
        message, exit_code = ("terminated", 143) if isinstance(stop, Terminated) else ("interrupted", 130)
    except BrokenPipeError:
        if reader_left():
            return 141  # what a shell reports for a command stopped by SIGPIPE; nothing to say
        message, exit_code = describe(BrokenPipeError(32, "Broken pipe")).message, 1
    except Exception as exc:  # noqa: BLE001 - the boundary; describe() names what it knows
        failure = describe(exc)
        message, exit_code = failure.message, failure.exit_code
        if getattr(args, "debug", False) or os.environ.get("SENTIBRIDGE_DEBUG") == "1":
            print(failure.traceback.rstrip(), file=sys.stderr)
        elif failure.unexpected:
            message += " (--debug shows the traceback)"
    print(f"error: {message}", file=sys.stderr, flush=True)
    if getattr(args, "json", False) if args is not None else "--json" in argv:
        _emit_json({"ok": False, "error": message})
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
