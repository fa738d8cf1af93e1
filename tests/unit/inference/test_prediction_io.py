"""Prediction file I/O: every input record is one row in file order, bad ones marked not dropped;
whole-file mistakes raise DataError; outputs read back equal in every format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentibridge.data import reading
from sentibridge.errors import DataError
from sentibridge.inference.files import (
    INPUT_COLUMNS,
    PredictionWriter,
    iter_prediction_input,
    read_prediction_input,
    write_predictions,
)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def _records(frame: pd.DataFrame) -> list[tuple]:
    return list(frame.itertuples(index=False, name=None))


# --- reading: each format -------------------------------------------------------------


def test_csv_reads_ids_texts_languages_and_ignores_extra_columns(tmp_path):
    path = _write(tmp_path, "in.CSV", 'id,extra,text,language\na1,x,"Hello, ""world""",EN\na2,y,"two\nlines",\n')
    frame = read_prediction_input(path)
    assert list(frame.columns) == INPUT_COLUMNS
    assert frame["row"].dtype == "int64"
    assert _records(frame) == [
        (0, "a1", 'Hello, "world"', "en", None),
        (1, "a2", "two\nlines", None, None),
    ]


def test_tsv_without_id_or_language_columns(tmp_path):
    path = _write(tmp_path, "in.tsv", "text\tscore\n  spaced text  \t1\nsecond, with comma\t2\n")
    assert _records(read_prediction_input(path)) == [
        (0, "0", "  spaced text  ", None, None),
        (1, "1", "second, with comma", None, None),
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".JSONL"])
def test_jsonl_reads_ids_texts_languages(tmp_path, suffix):
    lines = [{"id": 7, "text": "héllo 👋", "language": "FR"}, {"text": " keep me ", "other": [1]}]
    path = _write(tmp_path, f"in{suffix}", "".join(json.dumps(line) + "\n" for line in lines))
    assert _records(read_prediction_input(path)) == [
        (0, "7", "héllo 👋", "fr", None),
        (1, "1", " keep me ", None, None),
    ]


def test_txt_keeps_blank_lines_as_error_rows_and_ignores_the_final_newline(tmp_path):
    path = _write(tmp_path, "in.txt", "first\r\n\n   \nlast, \"quoted\"\n")
    assert _records(read_prediction_input(path)) == [
        (0, "0", "first", None, None),
        (1, "1", None, None, "empty text"),
        (2, "2", None, None, "empty text"),
        (3, "3", 'last, "quoted"', None, None),
    ]


def test_txt_without_final_newline_keeps_the_last_line(tmp_path):
    path = _write(tmp_path, "in.txt", "a\nb")
    assert read_prediction_input(path)["text"].tolist() == ["a", "b"]


def test_parquet_reads_ids_texts_languages_and_checks_each_value(tmp_path):
    path = tmp_path / "in.parquet"
    pd.DataFrame(
        {"id": pd.array([7, None, 9, 10], dtype="Int64"), "text": ["héllo", "two", None, "  "], "language": ["FR", None, "en", "en"], "extra": [1, 2, 3, 4]}
    ).to_parquet(path)
    assert _records(read_prediction_input(path)) == [
        (0, "7", "héllo", "fr", None),
        (1, "1", "two", None, None),
        (2, "9", None, None, "missing text"),
        (3, "10", None, None, "empty text"),
    ]
    frame = read_prediction_input(path, text_column="extra")
    assert frame["error"].tolist() == ["text is not a string"] * 4
    with pytest.raises(DataError, match=r"no 'body' column \(columns: id, text, language, extra\)"):
        read_prediction_input(path, text_column="body")


def test_a_folder_is_one_input_with_rows_named_by_file_and_line(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    _write(folder, "b.csv", "id,text,language\n,first,en\nown,second,fr\n")
    _write(folder / "sub", "a.txt", "third\n\n")
    _write(folder, "README.md", "not input")
    chunks = list(iter_prediction_input(folder, chunk_rows=2))
    assert _records(pd.concat(chunks, ignore_index=True)) == [
        (0, "b.csv:2", "first", "en", None),
        (1, "own", "second", "fr", None),
        (2, "sub/a.txt:1", "third", None, None),
        (3, "sub/a.txt:2", None, None, "empty text"),
    ]


def test_a_folder_checks_every_file_before_the_first_row(tmp_path):
    _write(tmp_path, "a.csv", "text\nfine\n")
    _write(tmp_path, "b.csv", "body\nno text column\n")
    with pytest.raises(DataError, match=r"b\.csv: no 'text' column"):
        iter_prediction_input(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \.csv, \.tsv, \.jsonl, \.ndjson, \.parquet, \.txt files"):
        iter_prediction_input(tmp_path / "empty")


def test_custom_column_names(tmp_path):
    path = _write(tmp_path, "in.csv", "body,lang\nhola,es\n")
    frame = read_prediction_input(path, text_column="body", language_column="lang")
    assert _records(frame) == [(0, "0", "hola", "es", None)]


# --- reading: bad rows are kept, in order ---------------------------------------------


def test_malformed_jsonl_rows_are_kept_in_order_with_their_error(tmp_path):
    content = (
        b'{"text": "good"}\n'
        b"{not json\n"
        b"[1, 2]\n"
        b'{"text": 3}\n'
        b'{"text": ["a"]}\n'
        b'{"text": null}\n'
        b'{"id": "x"}\n'
        b'{"text": "  \\t "}\n'
        b'{"text": "ok", "language": 5}\n'
        b'{"text": "\xff\xfe"}\n'
        b"\n"
        b'{"text": "last", "language": "de"}\n'
    )
    frame = read_prediction_input(_write(tmp_path, "in.jsonl", content))
    assert frame["row"].tolist() == list(range(12))
    errors = frame["error"].tolist()
    assert errors[0] is None and errors[-1] is None
    assert errors[1].startswith("invalid JSON: ")
    assert errors[2:11] == [
        "not a JSON object",
        "text is not a string",
        "text is not a string",
        "missing text",
        "missing text",
        "empty text",
        "language is not a string",
        "not UTF-8 text",
        "empty text",  # a blank line is an empty record, in every format
    ]
    assert frame["id"].tolist()[6] == "x"
    assert frame["text"].tolist() == ["good"] + [None] * 10 + ["last"]
    assert frame["language"].tolist()[-1] == "de"


def test_malformed_csv_rows_are_kept_in_order_with_their_error(tmp_path):
    path = _write(tmp_path, "in.csv", "id,language,text\n1,en,fine\n2,en\n3,en,   \n\n5,english,words\n6,,ok\n")
    assert _records(read_prediction_input(path)) == [
        (0, "1", "fine", "en", None),
        (1, "2", None, None, "missing text"),
        (2, "3", None, None, "empty text"),
        (3, "3", None, None, "empty text"),
        (4, "5", None, None, "unknown language code 'english'"),
        (5, "6", "ok", None, None),
    ]


def test_na_and_null_texts_stay_texts_in_csv(tmp_path):
    path = _write(tmp_path, "in.csv", "text,language\nNA,en\nnull,en\nNaN,en\nNone,en\n")
    frame = read_prediction_input(path)
    assert frame["text"].tolist() == ["NA", "null", "NaN", "None"]
    assert frame["error"].isna().all()


@pytest.mark.parametrize(
    ("written", "language", "error"),
    [
        ("  EN ", "en", None),
        ("pt", "pt", None),
        ("FIL", None, "unknown language code 'fil'"),  # ISO 639-3: not a code the model was trained with
        ("xx", None, "unknown language code 'xx'"),
        ("", None, None),
        ("   ", None, None),
        ("english", None, "unknown language code 'english'"),
        ("xx1", None, "unknown language code 'xx1'"),
        ("pt-br", None, "unknown language code 'pt-br'"),
    ],
)
def test_language_normalisation(tmp_path, written, language, error):
    path = _write(tmp_path, "in.jsonl", json.dumps({"text": "t", "language": written}) + "\n")
    (record,) = _records(read_prediction_input(path))
    assert record[3:] == (language, error)
    assert record[2] == (None if error else "t")


# --- reading: streamed in chunks ------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 5, 50])
def test_chunks_concatenate_to_the_whole_file_with_row_numbers_continuing(tmp_path, chunk_rows):
    lines = [json.dumps({"text": f"t{i}", "language": "en"}) if i % 3 else "{broken" for i in range(10)]
    path = _write(tmp_path, "in.jsonl", "\n".join(lines) + "\n")
    chunks = list(iter_prediction_input(path, chunk_rows=chunk_rows))
    assert [len(chunk) for chunk in chunks[:-1]] == [chunk_rows] * (len(chunks) - 1)
    assert all(list(chunk.index) == list(range(len(chunk))) for chunk in chunks)
    joined = pd.concat(chunks, ignore_index=True)
    assert joined["row"].tolist() == list(range(10))
    assert _records(joined) == _records(read_prediction_input(path))


def test_a_quoted_newline_across_a_chunk_boundary_stays_one_record(tmp_path):
    path = _write(tmp_path, "in.csv", 'text\nfirst\n"multi\nline"\nthird\n')
    chunks = list(iter_prediction_input(path, chunk_rows=1))
    assert [chunk["text"].tolist() for chunk in chunks] == [["first"], ["multi\nline"], ["third"]]


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_csv_line_endings_of_any_kind(tmp_path, newline):
    path = _write(tmp_path, "in.csv", newline.join(["text,language", "one,en", '"two\rlines",fr', "three,"]) + newline)
    assert read_prediction_input(path)["text"].tolist() == ["one", "two\rlines", "three"]


@pytest.mark.parametrize("name", ["in.csv", "in.txt"])
def test_lines_longer_than_a_read_block_read_the_same(tmp_path, monkeypatch, name):
    content = '\ufefftext\r\nshort\n"a quoted\r\nline much longer than the block"\n\nlast without newline'
    path = _write(tmp_path, name, content)
    whole = _records(read_prediction_input(path))
    monkeypatch.setattr(reading, "BLOCK", 4)
    assert _records(read_prediction_input(path)) == whole and len(whole) == (4 if name == "in.csv" else 6)
    # A byte that is not UTF-8 in the last line costs that row only.
    path.write_bytes(content.encode()[:-4] + b"\xff" + content.encode()[-3:])
    broken = _records(read_prediction_input(path))
    assert broken[:-1] == whole[:-1]
    assert broken[-1] == (len(whole) - 1, str(len(whole) - 1), None, None, "not UTF-8 text")


def test_txt_splits_on_newlines_only(tmp_path):
    path = _write(tmp_path, "in.txt", "\ufeffa\u2028b\r\nc\x0cd\n\ne")
    assert read_prediction_input(path)["text"].tolist() == ["a\u2028b", "c\x0cd", None, "e"]


def test_writer_appends_chunks_and_discards_on_error(tmp_path):
    path = tmp_path / "out.csv"
    with PredictionWriter(path) as writer:
        for start in range(3):
            writer.write(_predictions().iloc[start : start + 1])
    assert path.read_bytes() == write_predictions(_predictions(), tmp_path / "whole.csv").read_bytes()
    with pytest.raises(ValueError), PredictionWriter(path) as writer:
        writer.write(_predictions().head(1))
        raise ValueError("stop")
    assert path.read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "whole.csv"]


# --- reading: whole-file mistakes ------------------------------------------------------


def test_csv_without_text_column_names_the_columns(tmp_path):
    path = _write(tmp_path, "in.csv", "id,body,lang\n1,hello,en\n")
    with pytest.raises(DataError, match=r"no 'text' column \(columns: id, body, lang\)"):
        read_prediction_input(path)
    with pytest.raises(DataError, match="no 'text' column"):
        iter_prediction_input(path)  # found before the first chunk is asked for


def test_unsupported_input_suffix_names_the_supported_ones(tmp_path):
    path = _write(tmp_path, "in.xlsx", "text\nhello\n")
    with pytest.raises(DataError, match=r"unsupported format '\.xlsx'.*\.csv.*\.jsonl.*\.parquet.*\.txt"):
        read_prediction_input(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_prediction_input(tmp_path / "nope.csv")


@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.txt", "in.jsonl"])
def test_a_line_that_is_not_utf8_is_one_error_row(tmp_path, name):
    lines = ["caf\u00e9", "ok", "na\u00efve", "fine"]
    body = [json.dumps({"text": line}, ensure_ascii=False) if name == "in.jsonl" else line for line in lines]
    header = [] if name in ("in.txt", "in.jsonl") else ["text"]
    raw = b"".join(line.encode("latin-1" if k % 2 == 0 else "utf-8") + b"\n" for k, line in enumerate(body))
    path = _write(tmp_path, name, "".join(f"{h}\n" for h in header).encode() + raw)
    frame = read_prediction_input(path)
    assert frame["text"].tolist() == [None, "ok", None, "fine"]
    assert frame["error"].tolist() == ["not UTF-8 text", None, "not UTF-8 text", None]


@pytest.mark.parametrize("name", ["in.csv", "in.tsv"])
def test_a_header_that_is_not_utf8_is_a_data_error(tmp_path, name):
    path = _write(tmp_path, name, "text\ncaf\u00e9\n".encode("utf-16"))
    with pytest.raises(DataError, match=r":1: the header is not UTF-8 text") as info:
        read_prediction_input(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "content"), [("in.csv", ""), ("in.csv", "text,language\n"), ("in.jsonl", ""), ("in.txt", "")])
def test_empty_file_gives_an_empty_table(tmp_path, name, content):
    frame = read_prediction_input(_write(tmp_path, name, content))
    assert list(frame.columns) == INPUT_COLUMNS
    assert len(frame) == 0


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = _write(tmp_path, "in.csv", "\ufefftext\nhello\n".encode())
    assert read_prediction_input(path)["text"].tolist() == ["hello"]


# --- writing ---------------------------------------------------------------------------


def _predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": pd.Series([0, 1, 2], dtype="int64"),
            "id": pd.Series(["a", "b", "c"], dtype=object),
            "text": pd.Series(['héllo, "wörld"', None, "line\nbreak"], dtype=object),
            "label": pd.Series(["positive", None, "negative"], dtype=object),
            "score": [0.123456789012345, np.nan, 1.0],
        }
    )


def _read_back(path: Path) -> pd.DataFrame:
    suffix = path.suffix
    if suffix in (".csv", ".tsv"):
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"id": str, "text": str, "label": str})
    elif suffix == ".jsonl":
        frame = pd.read_json(path, lines=True, dtype={"id": str})
    elif suffix == ".json":
        frame = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    else:
        frame = pd.read_parquet(path)
    return frame


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """Same values, whatever missing marker and string dtype a reader picked."""
    return frame.astype({"row": "int64", "score": "float64"}).astype(
        {c: object for c in ("id", "text", "label")}
    ).pipe(lambda f: f.where(f.notna(), None))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_write_predictions_reads_back_equal(tmp_path, suffix):
    path = tmp_path / "deep" / "er" / f"out{suffix}"
    assert write_predictions(_predictions(), path) == path
    pd.testing.assert_frame_equal(_normalised(_read_back(path)), _normalised(_predictions()))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_missing_values_are_empty_cells_and_json_nulls(tmp_path):
    csv_text = write_predictions(_predictions(), tmp_path / "out.csv").read_text(encoding="utf-8")
    assert csv_text.splitlines()[2] == "1,b,,,"
    jsonl = write_predictions(_predictions(), tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert json.loads(jsonl.splitlines()[1]) == {"row": 1, "id": "b", "text": None, "label": None, "score": None}
    assert "héllo" in jsonl  # ensure_ascii=False
    array = json.loads(write_predictions(_predictions(), tmp_path / "out.json").read_text(encoding="utf-8"))
    assert [record["score"] for record in array] == [0.123456789012345, None, 1.0]


def test_write_predictions_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n", encoding="utf-8")
    write_predictions(_predictions().head(1), path)
    assert json.loads(path.read_text(encoding="utf-8"))["id"] == "a"


def test_write_empty_json_is_an_empty_array(tmp_path):
    path = write_predictions(_predictions().head(0), tmp_path / "out.json")
    assert json.loads(path.read_text(encoding="utf-8")) == []


def test_unsupported_output_suffix(tmp_path):
    with pytest.raises(DataError, match=r"unsupported output format '\.xlsx'"):
        write_predictions(_predictions(), tmp_path / "out.xlsx")
    assert list(tmp_path.iterdir()) == []


# --- property ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(), max_size=20))
def test_jsonl_texts_round_trip(tmp_path, texts):
    path = tmp_path / "prop.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    frame = read_prediction_input(path)
    assert len(frame) == len(texts)
    for text, got, error in zip(texts, frame["text"], frame["error"]):
        if text.strip():
            assert (got, error) == (text, None)
        else:
            assert (got, error) == (None, "empty text")
