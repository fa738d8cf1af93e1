"""`sentibridge schedule` on the real local stack: no ZenML schedules there, so a crontab entry."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_fork import run_sentibridge
from tests.conftest import cli_env
from tests.unit.test_schedule import _FAKE_CRONTAB

pytestmark = pytest.mark.integration


def _schedule(home: Path, tmp_path: Path, *args: str, crontab: bool = True) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    if crontab and not (bin_dir / "crontab").exists():
        bin_dir.mkdir()
        (bin_dir / "crontab").write_text(_FAKE_CRONTAB.format(python=sys.executable))
        (bin_dir / "crontab").chmod(0o755 | stat.S_IXUSR)
    # Without a crontab, PATH keeps only the interpreter's folder (no system crontab either).
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}" if crontab else str(Path(sys.executable).parent)
    env = {**cli_env(home), "PATH": path, "FAKE_CRONTAB_FILE": str(tmp_path / "table")}
    return run_sentibridge(["schedule", *args], env=env, timeout=300)


def test_local_stack_gets_a_crontab_entry_that_retrains_if_data_changed(home, tmp_path):
    proc = _schedule(home, tmp_path, "--cron", "0 3 * * 1", "--set", "train.max_steps=5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the local orchestrator has no schedules" in proc.stdout
    table = (tmp_path / "table").read_text()
    [line] = [l for l in table.splitlines() if "# sentibridge:" in l]
    assert line.startswith("0 3 * * 1 cd ") and "retrain --if-data-changed --set train.max_steps=5" in line
    assert f"SENTIBRIDGE_HOME={home}" in line and "ZENML_ANALYTICS_OPT_IN=false" in line

    again = _schedule(home, tmp_path, "--cron", "@daily")
    assert again.returncode == 0 and "replaced" in again.stdout
    assert [l.split(" cd ")[0] for l in (tmp_path / "table").read_text().splitlines()] == ["@daily"]

    removed = _schedule(home, tmp_path, "--remove")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert "# sentibridge:" not in (tmp_path / "table").read_text()


def test_print_needs_no_crontab_and_bad_cron_is_one_line(home, tmp_path):
    printed = _schedule(home, tmp_path, "--cron", "30 2 * * *", "--print", crontab=False)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert printed.stdout.startswith("30 2 * * * cd ") and "retrain --if-data-changed" in printed.stdout
    bad = _schedule(home, tmp_path, "--cron", "61 3 * * 1", crontab=False)
    assert bad.returncode == 2 and "minute '61' ('61', not in 0-59" in bad.stderr and "Traceback" not in bad.stderr
    missing = _schedule(home, tmp_path, "--cron", "0 3 * * 1", crontab=False)
    assert missing.returncode == 1 and "crontab not found" in missing.stderr and "Traceback" not in missing.stderr
