"""Data version: our md5 must be DVC 3's md5, and we must say whether DVC's record still matches."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sentibridge.data.version import DataVersion, data_version, dvc_md5
from sentibridge.schedule import retrain_reason
from tests.conftest import REPO, SAMPLE

DVC = Path(sys.executable).with_name("dvc")


def make_folder(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.csv").write_bytes(b"text,label,language\nhi,2,en\n")
    (root / "b.jsonl").write_bytes(b'{"text": "x", "label": 0, "language": "fr"}\n')
    (root / "sub" / "c.txt").write_bytes("caf\u00e9\r\n".encode("utf-8"))  # CRLF: DVC 3 hashes bytes as they are
    (root / "sub" / "deeper" / "d.parquet").write_bytes(bytes(range(256)) * 10)
    (root / "a-b.csv").write_bytes(b"sorts between a.csv and sub/\n")
    return root


# --- md5 ------------------------------------------------------------------------------------


def test_file_md5_is_plain_md5_of_the_bytes(tmp_path):
    data = b"some bytes\r\nwith CRLF\n" * 1000
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert dvc_md5(path) == hashlib.md5(data).hexdigest()


def test_file_md5_of_a_file_larger_than_one_chunk(tmp_path):
    data = os.urandom((1 << 20) + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert dvc_md5(path) == hashlib.md5(data).hexdigest()


def test_folder_md5_depends_on_content_and_names_only(tmp_path):
    one = make_folder(tmp_path / "one")
    two = tmp_path / "two"
    shutil.copytree(one, two)
    os.utime(two / "a.csv", (0, 0))  # timestamps are not content
    md5 = dvc_md5(one)
    assert md5.endswith(".dir") and len(md5) == 36
    assert dvc_md5(two) == md5

    (two / "a.csv").write_bytes(b"text,label,language\nhi,1,en\n")
    assert dvc_md5(two) != md5
    shutil.copy(one / "a.csv", two / "a.csv")
    assert dvc_md5(two) == md5

    (two / "a.csv").rename(two / "renamed.csv")
    assert dvc_md5(two) != md5


def test_empty_folder_has_the_md5_of_an_empty_listing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert dvc_md5(tmp_path / "empty") == hashlib.md5(b"[]").hexdigest() + ".dir"


# --- records --------------------------------------------------------------------------------


def test_untracked_data_is_versioned_by_content(tmp_path):
    folder = make_folder(tmp_path / "data")
    version = data_version(folder)
    assert version == DataVersion(md5=dvc_md5(folder), source="content", record=None)
    assert version.as_metadata() == {
        "data_version": version.md5,
        "data_version_source": "content",
        "dvc_record": "",
    }


def test_repo_sample_matches_its_cache_false_dvc_file():
    recorded = yaml.safe_load((REPO / "data" / "sample.dvc").read_text(encoding="utf-8"))["outs"][0]
    assert recorded["cache"] is False
    version = data_version(SAMPLE)
    assert version.md5 == recorded["md5"]
    assert version.source == "dvc"
    assert Path(version.record).name == "sample.dvc"
    assert version.as_metadata()["dvc_record"].endswith("sample.dvc")


def write_dvc_file(path: Path, md5: str) -> Path:
    record = path.with_name(path.name + ".dvc")
    record.write_text(
        yaml.safe_dump({"outs": [{"path": path.name, "cache": False, "md5": md5, "hash": "md5"}]}),
        encoding="utf-8",
    )
    return record


def test_dvc_file_with_cache_false_is_read(tmp_path):
    folder = make_folder(tmp_path / "data")
    record = write_dvc_file(folder, dvc_md5(folder))
    assert data_version(folder) == DataVersion(dvc_md5(folder), "dvc", str(record))

    (folder / "new.csv").write_bytes(b"text,label,language\nx,0,en\n")
    changed = data_version(folder)
    assert changed.source == "dvc-modified"
    assert changed.md5 == dvc_md5(folder)  # the md5 on disk, not DVC's old one
    assert changed.record == str(record)


def test_dvc_file_without_md5_means_untracked(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"x")
    (tmp_path / "f.csv.dvc").write_text("outs:\n- path: f.csv\n", encoding="utf-8")
    assert data_version(path).source == "content"


def write_lock(folder: Path, entry_path: str, md5: str, kind: str = "deps") -> Path:
    lock = folder / "dvc.lock"
    lock.write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "other": {"cmd": "true", "deps": [{"path": "elsewhere.csv", "md5": "0" * 32}]},
                    "prepare": {"cmd": "python prep.py", kind: [{"path": entry_path, "hash": "md5", "md5": md5}]},
                },
            }
        ),
        encoding="utf-8",
    )
    return lock


@pytest.mark.parametrize("kind", ["deps", "outs"])
def test_dvc_lock_entry_is_read_from_an_enclosing_folder(tmp_path, kind):
    project = tmp_path / "project"
    folder = make_folder(project / "data" / "raw")
    lock = write_lock(project, "data/raw", dvc_md5(folder), kind)
    assert data_version(folder) == DataVersion(dvc_md5(folder), "dvc", str(lock))

    write_lock(project, "data/raw", "f" * 32 + ".dir", kind)
    assert data_version(folder).source == "dvc-modified"


def test_dvc_lock_for_another_path_is_ignored(tmp_path):
    folder = make_folder(tmp_path / "data")
    write_lock(tmp_path, "other", dvc_md5(folder))
    assert data_version(folder).source == "content"


def test_only_the_nearest_dvc_lock_is_consulted(tmp_path):
    # As documented: the nearest dvc.lock above the data decides, a farther one is not read.
    folder = make_folder(tmp_path / "project" / "data" / "raw")
    write_lock(tmp_path / "project", "data/raw", dvc_md5(folder))
    assert data_version(folder).source == "dvc"
    write_lock(tmp_path / "project" / "data", "unrelated", "0" * 32)
    assert data_version(folder).source == "content"


def test_dvc_file_takes_precedence_over_dvc_lock(tmp_path):
    folder = make_folder(tmp_path / "data")
    write_lock(tmp_path, "data", "f" * 32 + ".dir")
    record = write_dvc_file(folder, dvc_md5(folder))
    version = data_version(folder)
    assert (version.source, version.record) == ("dvc", str(record))


# --- against real DVC -----------------------------------------------------------------------


def dvc(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(repo.parent / "dvc-site-cache"),  # keep DVC's index out of /var/tmp
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    subprocess.run([str(DVC), *args], cwd=repo, env=env, check=True, capture_output=True, timeout=120)


@pytest.fixture
def git_repo(tmp_path, monkeypatch) -> Path:
    if shutil.which("git") is None or not DVC.is_file():
        pytest.skip("git or the dvc executable next to the interpreter is missing")
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site-cache"))  # DVC's state, read in-process too
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, capture_output=True, timeout=60)
    dvc(repo, "init", "-q")
    return repo


def recorded_md5(record: Path) -> str:
    return yaml.safe_load(record.read_text(encoding="utf-8"))["outs"][0]["md5"]


def test_md5_equals_what_dvc_add_records(git_repo):
    folder = make_folder(git_repo / "data")
    single = git_repo / "reviews.jsonl"
    single.write_bytes("{\"text\": \"ünïcödé\", \"label\": 1, \"language\": \"de\"}\r\n".encode("utf-8"))
    dvc(git_repo, "add", "-q", "data", "reviews.jsonl")

    for path in (folder, single):
        record = path.with_name(path.name + ".dvc")
        version = data_version(path)
        assert version.md5 == recorded_md5(record)
        assert version.source == "dvc"
        assert version.record == str(record)

    # Modified after `dvc add`: our md5 follows the disk, DVC's record does not.
    (folder / "sub" / "c.txt").write_bytes(b"changed\n")
    single.write_bytes(b'{"text": "other", "label": 0, "language": "de"}\n')
    for path in (folder, single):
        version = data_version(path)
        assert version.source == "dvc-modified"
        assert version.md5 != recorded_md5(path.with_name(path.name + ".dvc"))


def test_md5_honours_dvcignore_like_dvc(git_repo):
    folder = make_folder(git_repo / "data")
    (folder / "scratch.log").write_bytes(b"not data\n")
    (git_repo / ".dvcignore").write_text("*.log\n", encoding="utf-8")
    dvc(git_repo, "add", "-q", "data")
    version = data_version(folder)
    assert version.md5 == recorded_md5(git_repo / "data.dvc")
    assert version.source == "dvc"


def test_retrain_is_a_no_op_until_a_dvc_add_of_changed_data(git_repo):
    folder = make_folder(git_repo / "data")
    dvc(git_repo, "add", "data")
    champion_trained_on = data_version(folder).md5  # the data_version tag on the champion
    ran, reason = retrain_reason(data_version(folder).md5, "1", champion_trained_on, if_data_changed=True)
    assert not ran and "unchanged since champion v1" in reason

    (folder / "new.csv").write_bytes(b"text,label,language\nbrand new,2,en\n")
    dvc(git_repo, "add", "data")
    now = data_version(folder)
    assert now.source == "dvc" and now.md5 != champion_trained_on
    ran, reason = retrain_reason(now.md5, "1", champion_trained_on, if_data_changed=True)
    assert ran and "data changed since champion v1" in reason
    assert retrain_reason(champion_trained_on, "1", champion_trained_on, True, force=True) == (True, "forced")
    assert retrain_reason(now.md5, None, None, True) == (True, "no champion yet")
    assert retrain_reason(now.md5, "1", now.md5, if_data_changed=False) == (True, "requested")
