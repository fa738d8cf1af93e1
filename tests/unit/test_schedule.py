"""Scheduling: cron validation, the crontab line, install/remove against a fake crontab,
and the schedule-support decision on fake stacks (no ZenML store, no network, no real cron)."""

from __future__ import annotations

import hashlib
import importlib
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentibridge.errors import ConfigError, SentibridgeError
from sentibridge.schedule import (
    MARKER_PREFIX,
    SCHEDULABLE_FLAVORS,
    cron_line,
    cron_tag,
    install_cron_line,
    orchestrator_supports_schedules,
    remove_cron_line,
    validate_cron,
    zenml_schedule,
)

# --- validate_cron ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 3 * * 1", "0 3 * * 1"),
        ("  0   3 *\t* 1 ", "0 3 * * 1"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("0-30/5 8-18 1,15 1-12/3 1-5", "0-30/5 8-18 1,15 1-12/3 1-5"),
        ("59 23 31 12 7", "59 23 31 12 7"),
        ("0 0 1 1 0", "0 0 1 1 0"),
        ("0 3 * JAN,jul Mon-FRI", "0 3 * JAN,jul Mon-FRI"),
        ("0 3 * * sun", "0 3 * * sun"),
        ("@daily", "@daily"),
        ("@Weekly", "@weekly"),
        ("@annually", "@annually"),
        (" @midnight ", "@midnight"),
    ],
)
def test_validate_cron_accepts(expr: str, expected: str) -> None:
    assert validate_cron(expr) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 3 * * 1", "invalid cron expression '61 3 * * 1': minute '61' ('61', not in 0-59"),
        ("0 24 * * 1", "hour '24' ('24', not in 0-23"),
        ("0 3 0 * *", "day '0' ('0', not in 1-31"),
        ("0 3 32 * *", "day '32' ('32', not in 1-31"),
        ("0 3 * 13 *", "month '13' ('13', not in 1-12"),
        ("0 3 * * 8", "weekday '8' ('8', not in 0-6"),
        ("0 3 * * 1-9", "weekday '1-9' ('9', not in 0-6"),
        ("0 3 * *", "expected 5 fields (minute hour day month weekday), got 4"),
        ("0 3 * * 1 2", "got 6"),
        ("", "got 0"),
        ("x 3 * * 1", "minute 'x' (No enumeration for Minutes"),
        ("0 3 * foo *", "month 'foo' (Unrecognised Month"),
        ("0 3 * mon *", "month 'mon' (Unrecognised Month"),
        ("0 3 * * jan", "weekday 'jan' (Unrecognised Day of Week"),
        ("*/0 * * * *", "minute '*/0' (Sequence can not be divided by zero"),
        ("*/x * * * *", "minute '*/x' (No enumeration for Minutes: 'x')"),
        ("5/15 * * * *", "minute '5/15' (Unknown cron range value"),
        ("30-10 * * * *", "minute '30-10' (Bad range '30-10')"),
        ("1,,2 * * * *", "minute '1,,2' (No enumeration for Minutes: '')"),
        ("-5 * * * *", "minute '-5' (No enumeration for Minutes"),
        ("0 3 L * *", "day 'L' (No enumeration for Day of Month"),
        ("0 3 ? * *", "day '?' (No enumeration for Day of Month"),
        ("0 3 * * 1#2", "weekday '1#2' (Unrecognised Day of Week"),
        ("@reboot", "unknown macro '@reboot'"),
        ("@every 5m", "got 2"),
    ],
)
def test_validate_cron_rejects_naming_the_field(expr: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_cron(expr)
    text = str(info.value)
    assert message in text
    assert text.startswith(f"invalid cron expression {expr!r}: ")
    assert "\n" not in text
    assert info.value.exit_code == 2


_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def _item(low: int, high: int) -> st.SearchStrategy[str]:
    """One valid list item of a field: n, a-b, */n or a-b/n."""
    number = st.integers(low, high)
    span = st.tuples(number, number).map(sorted)
    step = st.integers(1, high)
    return st.one_of(
        number.map(str),
        span.map(lambda ab: f"{ab[0]}-{ab[1]}"),
        step.map(lambda n: f"*/{n}"),
        st.tuples(span, step).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
    )


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    return st.one_of(st.just("*"), st.lists(_item(low, high), min_size=1, max_size=4).map(",".join))


_valid_fields = st.tuples(*(_field(low, high) for low, high in _BOUNDS))
_separators = st.lists(st.sampled_from([" ", "  ", "\t", " \t "]), min_size=6, max_size=6)


@settings(max_examples=200, deadline=None)
@given(fields=_valid_fields, gaps=_separators)
def test_valid_expressions_pass_and_round_trip(fields: tuple[str, ...], gaps: list[str]) -> None:
    spaced = gaps[0] + "".join(f"{field}{gap}" for field, gap in zip(fields, gaps[1:]))
    normalised = validate_cron(spaced)
    assert normalised == " ".join(fields)
    assert validate_cron(normalised) == normalised


@settings(max_examples=100, deadline=None)
@given(minute=st.integers(60, 10**6), fields=_valid_fields)
def test_minute_of_60_or_more_is_rejected(minute: int, fields: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match=rf"minute '{minute}' \('{minute}', not in 0-59"):
        validate_cron(" ".join((str(minute), *fields[1:])))


# --- cron_line ---------------------------------------------------------------------------------


def test_cron_line_quotes_paths_and_sets_env(tmp_path: Path) -> None:
    workdir = tmp_path / "my project's dir"
    workdir.mkdir()
    log = workdir / "logs dir" / "retrain.log"
    command = [sys.executable, "-m", "sentibridge", "retrain", "--if-data-changed", "--config", "a b.yaml"]
    line = cron_line(" 0  3 * * 1", workdir, command, log, env={"SENTIBRIDGE_HOME": "/x y"})

    tag = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:12]
    assert tag == cron_tag(workdir)
    assert line.startswith("0 3 * * 1 cd ")
    assert line.endswith(f" >> {shlex.quote(str(log))} 2>&1 {MARKER_PREFIX}{tag}")
    assert "\n" not in line

    # The command part, as cron's /bin/sh will split it (the marker is a shell comment).
    words = shlex.split(line.split(" ", 5)[5], comments=True)
    assert words[:3] == ["cd", str(workdir), "&&"]
    assert words[3:5] == ["ZENML_ANALYTICS_OPT_IN=false", "SENTIBRIDGE_HOME=/x y"]
    assert words[5:-3] == command
    assert words[-3:] == [">>", str(log), "2>&1"]


def test_cron_line_runs_in_a_shell(tmp_path: Path) -> None:
    """The line's command part really runs: cd into the odd folder, env set, output logged."""
    workdir = tmp_path / "it's a dir"
    workdir.mkdir()
    log = tmp_path / "out.log"
    script = "import os; print(os.getcwd(), os.environ['ZENML_ANALYTICS_OPT_IN'], os.environ['EXTRA'], sep='|')"
    line = cron_line("@hourly", workdir, [sys.executable, "-c", script], log, env={"EXTRA": "a b"})
    subprocess.run(["/bin/sh", "-c", line.split(" ", 1)[1]], check=True, timeout=60)
    assert log.read_text() == f"{workdir.resolve()}|false|a b\n"


def test_cron_line_escapes_percent_and_refuses_newlines(tmp_path: Path) -> None:
    # Cron turns a bare % into a newline, even inside quotes.
    line = cron_line("0 3 * * 1", tmp_path / "100%", ["echo"], tmp_path / "log")
    assert r"100\%" in line
    assert "%" not in line.replace(r"\%", "")
    with pytest.raises(ConfigError, match="line break"):
        cron_line("0 3 * * 1", tmp_path / "a\nb", ["echo"], tmp_path / "log")


def test_cron_line_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="minute '61'"):
        cron_line("61 3 * * 1", tmp_path, ["echo"], tmp_path / "log")
    with pytest.raises(ConfigError, match="empty command"):
        cron_line("0 3 * * 1", tmp_path, [], tmp_path / "log")
    with pytest.raises(ConfigError, match="environment variable name"):
        cron_line("0 3 * * 1", tmp_path, ["echo"], tmp_path / "log", env={"A B": "1"})


def test_cron_tag_is_per_project(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert cron_tag(tmp_path / "a") != cron_tag(tmp_path / "b")
    assert cron_tag(tmp_path / "a") == cron_tag(tmp_path / "b" / ".." / "a")


# --- install / remove with a fake crontab ----------------------------------------------------

_FAKE_CRONTAB = """#!{python}
\"\"\"A stand-in for crontab(1): the table lives in $FAKE_CRONTAB_FILE.\"\"\"
import os, sys
table = os.environ["FAKE_CRONTAB_FILE"]
if os.environ.get("FAKE_CRONTAB_FAIL"):
    sys.stderr.write(os.environ["FAKE_CRONTAB_FAIL"] + "\\nsecond line\\n")
    sys.exit(1)
if sys.argv[1:] == ["-l"]:
    if not os.path.exists(table):
        sys.stderr.write("no crontab for tester\\n")
        sys.exit(1)
    sys.stdout.write(open(table).read())
elif sys.argv[1:] == ["-"]:
    open(table, "w").write(sys.stdin.read())
else:
    sys.stderr.write("usage: crontab [-l | -]\\n")
    sys.exit(2)
"""


@pytest.fixture
def fake_crontab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """Path of a fake crontab binary, and the file holding its table (absent = no crontab)."""
    binary = tmp_path / "bin" / "crontab"
    binary.parent.mkdir()
    binary.write_text(_FAKE_CRONTAB.format(python=sys.executable))
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    table = tmp_path / "crontab.txt"
    monkeypatch.setenv("FAKE_CRONTAB_FILE", str(table))
    monkeypatch.delenv("FAKE_CRONTAB_FAIL", raising=False)
    return str(binary), table


def _project(tmp_path: Path, name: str = "project") -> Path:
    workdir = tmp_path / name
    workdir.mkdir(exist_ok=True)
    return workdir


def test_install_into_empty_crontab(tmp_path: Path, fake_crontab: tuple[str, Path]) -> None:
    binary, table = fake_crontab
    line = cron_line("0 3 * * 1", _project(tmp_path), ["sentibridge", "retrain"], tmp_path / "log")
    text, replaced = install_cron_line(line, crontab_bin=binary)
    assert (text, replaced) == (line + "\n", False)
    assert table.read_text() == line + "\n"


def test_install_twice_replaces_and_keeps_other_lines(tmp_path: Path, fake_crontab: tuple[str, Path]) -> None:
    binary, table = fake_crontab
    other_project = cron_line("@daily", _project(tmp_path, "other"), ["sentibridge", "retrain"], tmp_path / "o.log")
    users = ["MAILTO=me@example.com", "# my backups", "0 1 * * * /usr/bin/backup # sentibridge:not-a-tag"]
    table.write_text("\n".join([*users, other_project]) + "\n")

    workdir = _project(tmp_path)
    first = cron_line("0 3 * * 1", workdir, ["sentibridge", "retrain"], tmp_path / "log")
    second = cron_line("30 4 * * *", workdir, ["sentibridge", "retrain", "--if-data-changed"], tmp_path / "log")
    assert install_cron_line(first, crontab_bin=binary)[1] is False
    text, replaced = install_cron_line(second, crontab_bin=binary)

    assert replaced is True
    assert text == table.read_text()
    assert text.splitlines() == [*users, other_project, second]
    assert sum(f"{MARKER_PREFIX}{cron_tag(workdir)}" in line for line in text.splitlines()) == 1


def test_remove(tmp_path: Path, fake_crontab: tuple[str, Path]) -> None:
    binary, table = fake_crontab
    workdir = _project(tmp_path)
    assert remove_cron_line(workdir, crontab_bin=binary) is False  # no crontab at all
    assert not table.exists()  # and nothing written

    table.write_text("0 1 * * * /usr/bin/backup\n")
    install_cron_line(cron_line("0 3 * * 1", workdir, ["sentibridge"], tmp_path / "log"), crontab_bin=binary)
    assert remove_cron_line(workdir, crontab_bin=binary) is True
    assert table.read_text() == "0 1 * * * /usr/bin/backup\n"
    assert remove_cron_line(workdir, crontab_bin=binary) is False


def test_crontab_failure_is_one_line(tmp_path: Path, fake_crontab: tuple[str, Path], monkeypatch) -> None:
    binary, _ = fake_crontab
    monkeypatch.setenv("FAKE_CRONTAB_FAIL", "crontab: permission denied")
    line = cron_line("0 3 * * 1", _project(tmp_path), ["sentibridge"], tmp_path / "log")
    with pytest.raises(SentibridgeError) as info:
        install_cron_line(line, crontab_bin=binary)
    assert str(info.value) == "crontab -l failed: crontab: permission denied"


def test_missing_crontab_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing called crontab in here
    line = cron_line("0 3 * * 1", _project(tmp_path), ["sentibridge"], tmp_path / "log")
    with pytest.raises(SentibridgeError) as info:
        install_cron_line(line)
    assert str(info.value) == "crontab not found on this machine; use --print and add the line to your scheduler"
    with pytest.raises(SentibridgeError, match="crontab not found"):
        remove_cron_line(tmp_path)


def test_install_refuses_a_line_without_marker(fake_crontab: tuple[str, Path]) -> None:
    with pytest.raises(ValueError, match="marker"):
        install_cron_line("0 3 * * 1 echo hi", crontab_bin=fake_crontab[0])


# --- schedule support on the stack -------------------------------------------------------------


def _stack(flavor: str, config: object | None = None) -> SimpleNamespace:
    return SimpleNamespace(name="fake", orchestrator=SimpleNamespace(flavor=flavor, config=config))


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        # The config's own answer wins.
        (_stack("local", SimpleNamespace(is_schedulable=False)), (False, "local")),
        (_stack("kubernetes", SimpleNamespace(is_schedulable=True)), (True, "kubernetes")),
        (_stack("my_custom", SimpleNamespace(is_schedulable=True)), (True, "my_custom")),
        # Without it, the flavor list decides.
        (_stack("local"), (False, "local")),
        (_stack("kubernetes"), (True, "kubernetes")),
        (_stack("airflow", SimpleNamespace()), (True, "airflow")),
        (_stack("local_docker", SimpleNamespace()), (False, "local_docker")),
    ],
)
def test_orchestrator_supports_schedules_on_fake_stacks(stack: SimpleNamespace, expected: tuple[bool, str]) -> None:
    assert orchestrator_supports_schedules(stack) == expected


def test_orchestrator_supports_schedules_with_real_zenml_configs() -> None:
    """ZenML 0.98's own config classes (no store touched): the attribute we rely on exists."""
    from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import KubernetesOrchestratorConfig
    from zenml.orchestrators.local.local_orchestrator import LocalOrchestratorConfig

    assert orchestrator_supports_schedules(_stack("local", LocalOrchestratorConfig())) == (False, "local")
    assert orchestrator_supports_schedules(_stack("kubernetes", KubernetesOrchestratorConfig())) == (True, "kubernetes")


_FLAVOR_CONFIGS = {
    "airflow": "zenml.integrations.airflow.flavors.airflow_orchestrator_flavor:AirflowOrchestratorConfig",
    "azureml": "zenml.integrations.azure.flavors.azureml_orchestrator_flavor:AzureMLOrchestratorConfig",
    "databricks": "zenml.integrations.databricks.flavors.databricks_orchestrator_flavor:DatabricksOrchestratorConfig",
    "hyperai": "zenml.integrations.hyperai.flavors.hyperai_orchestrator_flavor:HyperAIOrchestratorConfig",
    "kubeflow": "zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor:KubeflowOrchestratorConfig",
    "kubernetes": "zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor:KubernetesOrchestratorConfig",
    "sagemaker": "zenml.integrations.aws.flavors.sagemaker_orchestrator_flavor:SagemakerOrchestratorConfig",
    "vertex": "zenml.integrations.gcp.flavors.vertex_orchestrator_flavor:VertexOrchestratorConfig",
    "local": "zenml.orchestrators.local.local_orchestrator:LocalOrchestratorConfig",
    "local_docker": "zenml.orchestrators.local_docker.local_docker_orchestrator:LocalDockerOrchestratorConfig",
    "tekton": "zenml.integrations.tekton.flavors.tekton_orchestrator_flavor:TektonOrchestratorConfig",
    "modal": "zenml.integrations.modal.flavors.modal_orchestrator_flavor:ModalOrchestratorConfig",
    "lightning": "zenml.integrations.lightning.flavors.lightning_orchestrator_flavor:LightningOrchestratorConfig",
    "ssh": "zenml.integrations.ssh.flavors.ssh_orchestrator_flavor:SSHOrchestratorConfig",
}


@pytest.mark.parametrize("flavor", sorted(_FLAVOR_CONFIGS))
def test_fallback_flavor_list_matches_installed_zenml(flavor: str) -> None:
    """SCHEDULABLE_FLAVORS agrees with each config class's ``is_schedulable`` (catches ZenML drift)."""
    module, _, name = _FLAVOR_CONFIGS[flavor].partition(":")
    config_class = getattr(importlib.import_module(module), name)
    # The property ignores self in every flavor; reading it off the class avoids building configs.
    assert config_class.is_schedulable.fget(None) is (flavor in SCHEDULABLE_FLAVORS)


def test_zenml_schedule() -> None:
    from zenml.config.schedule import Schedule

    schedule = zenml_schedule(" 0  3 * * 1 ")
    assert isinstance(schedule, Schedule)
    assert schedule.cron_expression == "0 3 * * 1"
    with pytest.raises(ConfigError, match="hour '25'"):
        zenml_schedule("0 25 * * *")

