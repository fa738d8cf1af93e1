"""Scheduled retraining: a crontab entry locally, a ZenML ``Schedule`` on production stacks.

ZenML's local orchestrator cannot run on a schedule (its config reports
``is_schedulable = False`` and ``Pipeline`` refuses a schedule on such a stack), so
locally we install one crontab line that runs ``sentibridge retrain --if-data-changed``
from the project folder. Stacks whose orchestrator does support schedules (kubernetes,
kubeflow, airflow, vertex, ...) get ``Schedule(cron_expression=...)`` instead.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crontab import CronSlice

from sentibridge.errors import ConfigError, SentibridgeError

if TYPE_CHECKING:  # zenml is slow to import; only the functions that need it import it
    from zenml.config.schedule import Schedule

__all__ = [
    "MARKER_PREFIX",
    "SCHEDULABLE_FLAVORS",
    "cron_line",
    "cron_tag",
    "install_cron_line",
    "orchestrator_supports_schedules",
    "remove_cron_line",
    "retrain_reason",
    "validate_cron",
    "zenml_schedule",
]

#: Ends every crontab line we write, followed by the project tag, so we find our own entry.
MARKER_PREFIX = "# sentibridge:"

#: Orchestrator flavors whose config reports ``is_schedulable = True`` in ZenML 0.98
#: (zenml/integrations/*/flavors/*_orchestrator_flavor.py). Only a fallback: at runtime
#: the orchestrator config's own ``is_schedulable`` wins. Not listed on purpose: tekton
#: (its orchestrator reads schedules, but its config inherits ``False`` and ZenML refuses
#: the schedule before it gets there), modal, lightning, ssh, skypilot ``vm_*``, local,
#: local_docker.
SCHEDULABLE_FLAVORS: frozenset[str] = frozenset(
    {
        "airflow",
        "azureml",
        "databricks",
        "hyperai",
        "kubeflow",
        "kubernetes",
        "sagemaker",
        "vertex",
    }
)

#: The five fields, in order, as messages name them.
_FIELDS = ("minute", "hour", "day", "month", "weekday")
# @reboot is left out: it is not a schedule, and production schedulers do not know it.
_MACROS = frozenset({"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"})
_MARKER_TAG = re.compile(re.escape(MARKER_PREFIX) + r"([0-9a-f]{12})\s*$")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A hung crontab must not hang the CLI.
_CRONTAB_TIMEOUT_S = 30


def validate_cron(expr: str) -> str:
    """Check a 5-field cron expression (or macro) and return it with single spaces.

    Checked here rather than by the scheduler, so a typo fails at ``sentibridge schedule``
    instead of silently never running (cron) or failing later on a remote stack. Each field
    is parsed by python-crontab, which follows Vixie cron: names for months and weekdays,
    weekday 7 for Sunday, steps only on ``*`` or a range, no ``L``/``?``/``#`` extensions.
    """
    fields = expr.split()
    if len(fields) == 1 and fields[0].startswith("@"):
        macro = fields[0].lower()
        if macro not in _MACROS:
            raise ConfigError(
                f"invalid cron expression {expr!r}: unknown macro {fields[0]!r} "
                f"(use one of {', '.join(sorted(_MACROS))})"
            )
        return macro
    if len(fields) != len(_FIELDS):
        raise ConfigError(
            f"invalid cron expression {expr!r}: expected 5 fields "
            f"(minute hour day month weekday), got {len(fields)}"
        )
    for position, (field, text) in enumerate(zip(_FIELDS, fields)):
        try:
            CronSlice(position, text)
        except (ValueError, KeyError) as exc:  # KeyError: a token that is neither number nor name
            raise ConfigError(f"invalid cron expression {expr!r}: {field} {text!r} ({exc.args[0]})") from None
    return " ".join(fields)


def cron_tag(workdir: Path) -> str:
    """The 12-hex tag of a project folder: one project, one crontab entry."""
    return hashlib.sha256(str(Path(workdir).resolve()).encode()).hexdigest()[:12]


def _cron_quote(word: str) -> str:
    """Shell-quote a word for a crontab command field.

    Cron turns an unescaped ``%`` into a newline before the shell sees it, even inside
    quotes, so it gets a backslash; a newline would end the crontab line, so it is refused.
    """
    if "\n" in word or "\r" in word:
        raise ConfigError(f"cannot put a line break into a crontab entry: {word!r}")
    return shlex.quote(word).replace("%", r"\%")


def cron_line(
    expr: str,
    workdir: Path,
    command: Sequence[str],
    log_file: Path,
    env: Mapping[str, str] | None = None,
) -> str:
    """One crontab line that runs ``command`` in ``workdir`` on ``expr``, appending to ``log_file``.

    Cron starts jobs in $HOME with an almost empty environment, so the line ``cd``s to the
    project and sets what the job needs; analytics are off because on a machine without
    network ZenML's analytics calls block the run.
    """
    normalised = validate_cron(expr)
    if not command:
        raise ConfigError("cannot schedule an empty command")
    variables = {"ZENML_ANALYTICS_OPT_IN": "false", **(env or {})}
    for name in variables:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"invalid environment variable name for the crontab entry: {name!r}")
    assignments = [f"{name}={_cron_quote(str(value))}" for name, value in variables.items()]
    parts = [
        normalised,
        "cd",
        _cron_quote(str(workdir)),
        "&&",
        *assignments,
        *(_cron_quote(str(word)) for word in command),
        ">>",
        _cron_quote(str(log_file)),
        "2>&1",
        # A shell comment to cron's /bin/sh, and how we recognise our entry later.
        f"{MARKER_PREFIX}{cron_tag(workdir)}",
    ]
    return " ".join(parts)


def retrain_command(config: str | None, overrides: Sequence[str]) -> list[str]:
    """``sentibridge retrain --if-data-changed`` with this config file (an absolute path) and ``--set`` pairs,
    run by this environment's ``sentibridge`` (cron has no virtual environment on its PATH)."""
    command = [str(Path(sys.executable).with_name("sentibridge")), "retrain", "--if-data-changed"]
    if config:
        command += ["--config", str(Path(config).resolve())]
    for pair in overrides:
        command += ["--set", pair]
    return command


def _crontab(crontab_bin: str, hint: str) -> str:
    """Full path of the crontab binary, or a one-line error saying what to do instead."""
    path = shutil.which(crontab_bin)
    if path is None:
        raise SentibridgeError(f"crontab not found on this machine; {hint}")
    return path


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=_CRONTAB_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise SentibridgeError(f"{' '.join(args)} did not answer within {_CRONTAB_TIMEOUT_S} s") from None
    except OSError as exc:
        raise SentibridgeError(f"cannot run {args[0]}: {exc.strerror or exc}") from None


def _first_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    return lines[0] if lines else f"exit code {result.returncode}"


# The table is read and written as plain lines through crontab(1), not with python-crontab's
# ``CronTab(user=True)``: that re-renders every entry it parses (``0 0 1 * *`` becomes
# ``@monthly``, ``0-7`` becomes ``0,*``) and comments out the ones it cannot parse, so the
# user's own entries would not survive untouched. It also waits on crontab without a timeout.
def _read_crontab(path: str) -> list[str]:
    """Current crontab lines; "no crontab for <user>" is an empty table, not an error."""
    result = _run([path, "-l"])
    if result.returncode != 0:
        if "no crontab for" in (result.stderr or "").lower():
            return []
        raise SentibridgeError(f"crontab -l failed: {_first_line(result)}")
    return result.stdout.splitlines()


def _write_crontab(path: str, lines: list[str]) -> str:
    # Cron ignores a last line without a newline, so the table always ends with one.
    text = "".join(f"{line}\n" for line in lines)
    result = _run([path, "-"], stdin=text)
    if result.returncode != 0:
        raise SentibridgeError(f"crontab - failed: {_first_line(result)}")
    return text


def _without_tag(lines: list[str], tag: str) -> tuple[list[str], bool]:
    """Lines not carrying ``tag``'s marker, and whether any did."""
    kept = []
    for line in lines:
        match = _MARKER_TAG.search(line)
        if match is None or match.group(1) != tag:
            kept.append(line)
    return kept, len(kept) != len(lines)


def install_cron_line(line: str, crontab_bin: str = "crontab") -> tuple[str, bool]:
    """Put ``line`` into the user's crontab, replacing this project's earlier entry.

    Returns the new crontab text and whether an entry was replaced. Other lines, the
    user's own and other projects', are kept as they are.
    """
    match = _MARKER_TAG.search(line)
    if match is None:
        raise ValueError(f"crontab line has no '{MARKER_PREFIX}<tag>' marker; build it with cron_line()")
    path = _crontab(crontab_bin, "use --print and add the line to your scheduler")
    kept, replaced = _without_tag(_read_crontab(path), match.group(1))
    return _write_crontab(path, [*kept, line]), replaced


def remove_cron_line(workdir: Path, crontab_bin: str = "crontab") -> bool:
    """Remove ``workdir``'s entry from the user's crontab; False if there was none."""
    path = _crontab(crontab_bin, "there is no crontab entry to remove")
    kept, removed = _without_tag(_read_crontab(path), cron_tag(workdir))
    if removed:  # untouched tables are not rewritten
        _write_crontab(path, kept)
    return removed


def orchestrator_supports_schedules(stack: Any | None = None) -> tuple[bool, str]:
    """Whether the stack's orchestrator runs ZenML schedules, and its flavor.

    Uses the orchestrator config's ``is_schedulable`` (what ZenML 0.98 itself checks in
    ``Pipeline._create_snapshot``), falling back to ``SCHEDULABLE_FLAVORS`` for objects
    without it. ``stack`` defaults to the active ZenML stack; tests pass a fake one.
    """
    if stack is None:
        from zenml.client import Client  # lazy: importing zenml costs seconds

        stack = Client().active_stack
    orchestrator = stack.orchestrator
    flavor = str(orchestrator.flavor)
    schedulable = getattr(getattr(orchestrator, "config", None), "is_schedulable", None)
    if isinstance(schedulable, bool):
        return schedulable, flavor
    return flavor in SCHEDULABLE_FLAVORS, flavor


def zenml_schedule(expr: str) -> Schedule:
    """A ZenML ``Schedule`` for ``expr``, validated first so a typo fails here and not remotely."""
    from zenml.config.schedule import Schedule  # lazy: importing zenml costs seconds

    return Schedule(cron_expression=validate_cron(expr))


def retrain_reason(
    data_version: str,
    champion_version: str | None,
    champion_data_version: str | None,
    if_data_changed: bool,
    force: bool = False,
) -> tuple[bool, str]:
    """Whether ``retrain`` should run, and why (the reason is printed and returned as JSON)."""
    if force:
        return True, "forced"
    if not if_data_changed:
        return True, "requested"
    if champion_version is None:
        return True, "no champion yet"
    if champion_data_version == data_version:
        return False, f"data unchanged since champion v{champion_version} (data version {data_version})"
    return True, f"data changed since champion v{champion_version}: {champion_data_version} -> {data_version}"
