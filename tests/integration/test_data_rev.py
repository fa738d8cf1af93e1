"""`--data-rev`: data read at a git revision through DVC, from a local-folder DVC remote, in a
fresh clone that has no DVC cache. Two revisions give two data versions, each equal to the md5
that revision's `.dvc` file records; a missing revision or path is one line and exit 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sentibridge.data.dvc_source import read_at_revision
from sentibridge.data.version import data_version
from sentibridge.errors import DataError
from tests.cli_fork import CONSOLE_SCRIPT, run_sentibridge
from tests.conftest import SAMPLE, cli_env

pytestmark = pytest.mark.integration

DVC = Path(sys.executable).with_name("dvc")
SENTIBRIDGE = CONSOLE_SCRIPT  # the console script, for the tests about the process itself
GIT = ["git", "-c", "user.name=sentibridge", "-c", "user.email=ci@sentibridge.invalid", "-c", "init.defaultBranch=main"]


def _env(home: Path, scratch: Path) -> dict[str, str]:
    return {**cli_env(home), "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(scratch / "dvc-site"), "GIT_CONFIG_NOSYSTEM": "1"}


def _run(cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    if cmd[0] == SENTIBRIDGE:
        proc = run_sentibridge(cmd[1:], env=env, cwd=cwd)
    else:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """A DVC repository with two tagged revisions of data/reviews pushed to a folder remote,
    and a fresh clone of it (no cache, no data): (clone, env, {tag: md5 its .dvc records})."""
    if shutil.which("git") is None or not DVC.is_file():
        pytest.skip("git or the dvc executable next to the interpreter is missing")
    origin, home = tmp_path / "origin", tmp_path / "home"
    env = _env(home, tmp_path)
    for key in ("DVC_NO_ANALYTICS", "DVC_SITE_CACHE_DIR", "GIT_CONFIG_NOSYSTEM"):
        monkeypatch.setenv(key, env[key])
    data = origin / "data" / "reviews"
    data.mkdir(parents=True)
    lines = (SAMPLE / "reviews.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    _run([*GIT, "init", "-q"], origin, env)
    _run([str(DVC), "init", "-q"], origin, env)
    _run([str(DVC), "remote", "add", "-d", "store", str(tmp_path / "remote")], origin, env)
    recorded = {}
    for tag, rows in (("v1", lines[:-36]), ("v2", lines)):
        (data / "reviews.jsonl").write_text("".join(rows), encoding="utf-8")
        _run([str(DVC), "add", "-q", "data/reviews"], origin, env)
        _run([str(DVC), "push", "-q"], origin, env)
        _run([*GIT, "add", "-A"], origin, env)
        _run([*GIT, "commit", "-q", "-m", tag], origin, env)
        _run([*GIT, "tag", tag], origin, env)
        recorded[tag] = yaml.safe_load((origin / "data" / "reviews.dvc").read_text())["outs"][0]["md5"]
    copy = tmp_path / "clone"
    _run([*GIT, "clone", "-q", str(origin), str(copy)], tmp_path, env)
    assert not (copy / "data" / "reviews").exists()  # the data is in the DVC remote only
    assert not (copy / ".dvc" / "cache").exists()
    return copy, env, recorded


def test_two_revisions_give_two_data_versions_from_the_remote(clone, tmp_path, monkeypatch):
    repo, env, recorded = clone
    monkeypatch.chdir(repo)
    into = tmp_path / "home" / "data-revisions"
    copies = {}
    for tag in ("v1", "v2"):
        copy, version = read_at_revision("data/reviews", tag, into)
        commit = _run(["git", "rev-parse", tag], repo, env).stdout.strip()
        assert version.md5 == recorded[tag] and version.source == "dvc"
        assert version.record == f"{commit}:data/reviews"
        assert copy == into / recorded[tag].removesuffix(".dir") / "reviews"
        copies[tag] = copy
    assert recorded["v1"] != recorded["v2"]
    assert len((copies["v2"] / "reviews.jsonl").read_text(encoding="utf-8").splitlines()) == 648
    assert len((copies["v1"] / "reviews.jsonl").read_text(encoding="utf-8").splitlines()) == 612
    # A second read of the same revision reuses the copy.
    assert read_at_revision("data/reviews", "v1", into)[0] == copies["v1"]
    # `dvc pull` brings the working tree to v2, and its data version is v2's.
    _run([str(DVC), "pull", "-q"], repo, env)
    assert data_version(repo / "data" / "reviews").md5 == recorded["v2"]
    with pytest.raises(DataError, match=r"^data/nothing: not found at revision v1 \([0-9a-f]{12}\) of "):
        read_at_revision("data/nothing", "v1", into)


def test_validate_at_a_revision_and_one_line_errors(clone):
    repo, env, recorded = clone
    # Label issues off: what is tested is the revision's data and version, not confident learning.
    proc = _run([SENTIBRIDGE, "validate", "--data", "data/reviews", "--data-rev", "v1", "--set", "data.label_issues=off",
                 "--json"], repo, env)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["data_version"] == recorded["v1"] and report["data_version_source"] == "dvc"
    assert report["rows_in"] == 612

    for args, message in [
        (["--data-rev", "no-such-rev"], "error: --data-rev no-such-rev: unknown Git revision 'no-such-rev'"),
        (["--data", "data/missing", "--data-rev", "v2"], "error: data/missing: not found at revision v2 ("),
    ]:
        proc = _run([SENTIBRIDGE, "train", *args, "--json"], repo, env, ok=False)
        assert proc.returncode == 1, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith(message), proc.stderr[-2000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["ok"] is False
    outside = _run([SENTIBRIDGE, "validate", "--data-rev", "v1"], repo.parent, env, ok=False)
    assert outside.returncode == 1 and outside.stderr.strip() == (
        f"error: --data-rev needs a DVC repository: no .dvc folder in {repo.parent} or above it"
    )
