"""`sentibridge validate` end to end: real ZenML local store in a temporary SENTIBRIDGE_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_fork import run_sentibridge
from tests.conftest import REPO, SAMPLE, cli_env

pytestmark = pytest.mark.integration


def run_cli(home: Path, *args: str, seeded: bool = True) -> subprocess.CompletedProcess:
    """`sentibridge <args>` in ``home`` (``seeded``: see ``cli_env``)."""
    return run_sentibridge(list(args), env=cli_env(home, seeded=seeded))


def last_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sample_data_validates_and_registers_the_stack(home):
    # A bare home: ZenML and MLflow create their stores in this first run, as for a new user.
    proc = run_cli(home, "validate", "--data", str(SAMPLE), "--json", seeded=False)
    assert proc.returncode == 0, proc.stderr
    report = last_json(proc)
    assert report["rows_in"] == report["rows_valid"] + report["rows_quarantined"] == 648
    assert len(report["languages"]) >= 8
    assert report["data_version_source"] == "dvc"  # data/sample.dvc records the same md5
    assert report["data_version"].endswith(".dir")
    issues = report["label_issues"]  # data.label_issues defaults to report: every split checked
    assert issues["mode"] == "report" and issues["train_rows_changed"] == 0
    assert issues["flagged"] == len(issues["ids"]) == sum(issues["per_language"].values()) > 0
    assert set(issues["per_split"]) == {"train", "val", "test"}
    assert "label issues (reported only)" in proc.stdout
    # all state under the home: ZenML config/store and the stack with MLflow
    assert (home / "zenml" / "config.yaml").is_file()
    stacks = subprocess.run(
        [str(Path(sys.executable).with_name("zenml")), "stack", "list"],
        cwd=REPO, env={**cli_env(home), "ZENML_CONFIG_PATH": str(home / "zenml")}, capture_output=True, text=True,
    )
    assert "sentibridge" in stacks.stdout
    # a second run is idempotent (no duplicate stack registration) and the same data version
    again = run_cli(home, "validate", "--data", str(SAMPLE), "--set", "data.label_issues=off", "--json")  # checked above
    assert again.returncode == 0, again.stderr
    assert last_json(again)["data_version"] == report["data_version"]


def test_umsab_counts_and_french_leakage(home, umsab):
    # Label issues off: embedding all 24k UMSAB tweets would take minutes (bench/label_issues.py measures them).
    proc = run_cli(home, "validate", "--data", str(umsab), "--set", "data.label_issues=off", "--json")
    assert proc.returncode == 0, proc.stderr
    report = last_json(proc)
    assert len(report["languages_in"]) == 8
    for lang, counts in report["languages_in"].items():
        assert counts == {"train": 1839, "val": 324, "test": 870}, lang
    assert report["rows_in"] == 8 * 3033 == report["rows_valid"] + report["rows_quarantined"]
    accounted = report["rows_out"] + report["duplicates_removed"] + report["leaks_removed"] + report["subsampled_out"]
    assert accounted == report["rows_valid"]
    assert report["leaks_by_language"].get("fr", 0) >= 2  # the README's two French test tweets in train
    assert report["leaks_exact"] >= 2


@pytest.mark.parametrize(
    ("content", "name", "message", "readable"),
    [
        ("text,label\nhi,pos\n", "nocol.csv", "missing column(s) language", False),
        ('{"text": "a", "label": 0, "language": "en"}\n{"text": broken\n', "broken.jsonl", "broken.jsonl:2: broken JSON line",
         False),
        ("text,label,language\nhello,pos,en\n,neg,en\nyo,9,en\n", "quar.csv", "rows quarantined", True),
    ],
)
def test_bad_input_is_one_line_and_exit_1(home, tmp_path, content, name, message, readable):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    proc = run_cli(home, "validate", "--data", str(path), "--json", seeded=False)  # which failures create stores
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert message in proc.stderr
    assert last_json(proc)["ok"] is False
    # An unreadable file fails before ZenML starts (no store in the home); rows that fail the
    # expectations need the pipeline's validation step.
    assert (home / "zenml").exists() is readable


def test_missing_path_and_usage_errors(home, tmp_path):
    missing = run_cli(home, "validate", "--data", str(tmp_path / "nope.csv"), "--json")
    assert missing.returncode == 1 and "no such file" in missing.stderr
    usage = run_cli(home, "validate", "--bogus-flag")
    assert usage.returncode == 2
    unknown_key = run_cli(home, "validate", "--set", "data.nope=1")
    assert unknown_key.returncode == 2 and "unknown config key 'data.nope'" in unknown_key.stderr
    moved_key = run_cli(home, "validate", "--set", "augment.embedder=embedded:multilingual-e5-small")
    assert moved_key.returncode == 2 and "augment.embedder moved to embedding.model" in moved_key.stderr
    assert "Traceback" not in missing.stderr + usage.stderr + unknown_key.stderr + moved_key.stderr
