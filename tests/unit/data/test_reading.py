"""The one reader: every format gives the same records; a field of any length is read; a record
that cannot be read is one error record, not a failed file; whole-file mistakes are one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from sentibridge.data import reading
from sentibridge.data.reading import SUFFIXES, TEXT, Record, input_files, open_file
from sentibridge.errors import DataError

ROWS = [
    {"id": "1", "text": 'Hello, "world"', "language": "en"},
    {"id": "2", "text": "two\nlines\tand a tab", "language": "fr"},
    {"id": "3", "text": "ünïcödé 👋 \u2028 kept", "language": "de"},
]


def _write_table(path: Path, rows: list[dict]) -> Path:
    """``rows`` in the format of ``path``'s suffix, written the way other tools write it."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif suffix in (".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        raise AssertionError(suffix)
    return path


def _fields(path: Path, columns=None) -> list[dict | None]:
    return [record.fields for record in open_file(path).records(columns)]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".CSV"])
def test_every_table_format_reads_the_same_records(tmp_path, suffix):
    path = _write_table(tmp_path / f"in{suffix}", ROWS)
    data = open_file(path)
    assert data.columns in (("id", "text", "language"), None)  # None: JSONL lines name their own
    assert _fields(path) == ROWS
    assert _fields(path, ("text",)) == [{"text": r["text"]} for r in ROWS]


def test_txt_is_one_text_per_line(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes("\ufeffa\u2028b\r\nc\x0cd\n\ne".encode())
    assert open_file(path).columns == (TEXT,)
    assert [r.fields for r in open_file(path).records()] == [{TEXT: "a\u2028b"}, {TEXT: "c\x0cd"}, {TEXT: ""}, {TEXT: "e"}]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet", ".txt"])
def test_a_field_of_any_length_is_read(tmp_path, suffix):
    # Far over the csv module's default 131072-character field limit.
    article = ("A long, long article: \"quoted\" words, commas; " * 6000)[:250_000]
    rows = [{"text": "short"}, {"text": article}, {"text": "after"}]
    path = tmp_path / f"in{suffix}"
    if suffix == ".txt":
        path.write_text("".join(r["text"] + "\n" for r in rows), encoding="utf-8")
    else:
        _write_table(path, rows)
    assert [f[TEXT] for f in _fields(path)] == ["short", article, "after"]


@pytest.mark.parametrize("block", [7, 1 << 20])
def test_line_numbers_are_physical_lines_whatever_the_read_block(tmp_path, monkeypatch, block):
    monkeypatch.setattr(reading, "BLOCK", block)
    path = tmp_path / "in.csv"
    path.write_text('\n\ntext,n\n"two\r\nlines",1\n\nthird,3\n"a\rb",4\n', encoding="utf-8", newline="")
    assert open_file(path).columns == ("text", "n")  # leading blank lines are no header
    assert list(open_file(path).records()) == [
        Record(4, {"text": "two\r\nlines", "n": "1"}),
        Record(6, None),  # a blank line: no fields, no error
        Record(7, {"text": "third", "n": "3"}),
        Record(8, {"text": "a\rb", "n": "4"}),
    ]


def test_records_that_cannot_be_read_are_error_records(tmp_path):
    csv_path = tmp_path / "in.csv"
    csv_path.write_bytes(b"text,language\nfine,en\ncaf\xe9,fr\nshort\nmany,en,extra\n")
    assert list(open_file(csv_path).records()) == [
        Record(2, {"text": "fine", "language": "en"}),
        Record(3, None, "not UTF-8 text"),
        Record(4, {"text": "short"}),  # a short row lacks its last fields
        Record(5, None, "3 fields, the header has 2"),
    ]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n{broken\n[1]\n\n{"text": "b"}')
    records = list(open_file(jsonl).records())
    assert [r.line for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r.error for r in records] == [None, "not UTF-8 text", "invalid JSON: Expecting property name enclosed in "
                                          "double quotes at column 2", "not a JSON object", None, None]
    assert records[4].blank and not records[1].blank and records[5].fields == {"text": "b"}


def test_parquet_streams_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "PARQUET_BATCH_ROWS", 2)
    path = tmp_path / "in.parquet"
    pd.DataFrame({"text": ["a", None, "c", "d", "e"], "n": [1, 2, 3, 4, 5]}).to_parquet(path)
    records = list(open_file(path).records(("text", "missing")))
    assert [r.line for r in records] == [1, 2, 3, 4, 5]
    assert [r.fields for r in records] == [{"text": "a"}, {"text": None}, {"text": "c"}, {"text": "d"}, {"text": "e"}]


def test_a_folder_is_its_data_files_sorted_by_path(tmp_path):
    for name in ("b.csv", "a/z.jsonl", "a/y.parquet", "c.TSV", "d.txt", "README.md", "notes.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    found = [p.relative_to(tmp_path).as_posix() for p in input_files(tmp_path)]
    assert found == ["a/y.parquet", "a/z.jsonl", "b.csv", "c.TSV", "d.txt"]
    assert input_files(tmp_path / "b.csv") == [tmp_path / "b.csv"]
    assert ".txt" in SUFFIXES and input_files(tmp_path, (".txt",)) == [tmp_path / "d.txt"]


@pytest.mark.parametrize("name", ["e.csv", "e.tsv", "e.jsonl", "e.parquet", "e.txt"])
def test_an_empty_file_has_no_columns_and_no_records(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    data = open_file(tmp_path / name)
    assert data.columns == () and list(data.records()) == []


def _utf16_csv(tmp: Path) -> Path:
    (tmp / "wide.csv").write_bytes("text\nhi\n".encode("utf-16"))
    return tmp / "wide.csv"


def _garbage_parquet(tmp: Path) -> Path:
    (tmp / "g.parquet").write_text("not parquet", encoding="utf-8")
    return tmp / "g.parquet"


def _xlsx(tmp: Path) -> Path:
    (tmp / "in.xlsx").write_text("x", encoding="utf-8")
    return tmp / "in.xlsx"


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda tmp: tmp / "nope.csv", "nope.csv: no such file or folder"),
        (lambda tmp: tmp, "not a file"),
        (_xlsx, "in.xlsx: unsupported format '.xlsx' (supported: .csv, .tsv, .jsonl, .ndjson, .parquet, .txt)"),
        (_utf16_csv, "wide.csv:1: the header is not UTF-8 text"),
        (_garbage_parquet, "g.parquet: cannot read parquet ("),
    ],
)
def test_whole_file_mistakes_are_one_line(tmp_path, make, phrase):
    with pytest.raises(DataError) as info:
        open_file(make(tmp_path))
    assert phrase in str(info.value) and "\n" not in str(info.value)
