"""What `predict --engine spark` refuses before Spark starts (no JVM needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from sentibridge.errors import DataError
from sentibridge.inference.spark import RESULT_TYPE, check_paths
from sentibridge.inference.serving import OUTPUT_COLUMNS


def test_a_readable_input_and_a_new_output_pass(tmp_path):
    pd.DataFrame({"text": ["hi"]}).to_parquet(tmp_path / "in.parquet")
    check_paths(str(tmp_path / "in.parquet"), str(tmp_path / "out"))
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(2):
        (folder / f"part-{k}.jsonl").write_text('{"text": "hi"}\n', encoding="utf-8")
    check_paths(str(folder), str(tmp_path / "out"))


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "missing.parquet", "no such file or folder"),
    (lambda p: (p / "in.txt").write_text("hi\n") and p / "in.txt", "a .txt file: use local predict"),
    (lambda p: pd.DataFrame({"review": ["hi"]}).to_parquet(p / "in.parquet") or p / "in.parquet", "no 'text' column"),
])
def test_an_input_spark_cannot_read_is_one_line(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        check_paths(str(make(tmp_path)), str(tmp_path / "out"))


def test_a_folder_of_two_formats_is_refused(tmp_path):
    (tmp_path / "a.csv").write_text("text\nhi\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "hi"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="a folder of one format"):
        check_paths(str(tmp_path), str(tmp_path.parent / "out"))


def test_an_existing_output_is_not_overwritten(tmp_path):
    pd.DataFrame({"text": ["hi"]}).to_parquet(tmp_path / "in.parquet")
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match="already exists"):
        check_paths(str(tmp_path / "in.parquet"), str(tmp_path / "out"))


def test_the_udf_returns_the_served_models_columns():
    assert [field.split()[0] for field in RESULT_TYPE.split(", ")] == OUTPUT_COLUMNS
