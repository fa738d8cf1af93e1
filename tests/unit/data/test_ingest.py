"""Ingestion: CSV/TSV/JSONL/Parquet files, folders of them and TweetEval folders become one row table.

Unreadable input fails with one DataError line naming the file; readable-but-bad records are
kept (marked) so that validation can quarantine them and nothing is lost on the way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sentibridge.errors import DataError
from sentibridge.data.ingest import ROW_COLUMNS, normalise_split, read_dataset
from sentibridge.labels import INVALID_LABEL
from tests.conftest import SAMPLE

RECORDS = [
    {"id": "r1", "text": "Great phone, love it", "label": "positive", "language": "English", "split": "train"},
    {"id": "r2", "text": "Terrible service", "label": "0", "language": "fr", "split": "validation"},
    {"id": "r3", "text": "It is ok I guess", "label": "neu", "language": "pt-BR", "split": ""},
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def values(series: pd.Series) -> list:
    """The column as a list, with any missing marker (None/NaN/NA) as None: "no split given"."""
    return [None if pd.isna(v) else v for v in series.tolist()]


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def write_tweeteval(root: Path, language: str, split: str, texts: str, labels: str) -> None:
    write_text(root / language / f"{split}_text.txt", texts)
    write_text(root / language / f"{split}_labels.txt", labels)


# --- well-formed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, first_line",
    [(".csv", 2), (".tsv", 2), (".jsonl", 1), (".ndjson", 1), (".parquet", 1)],
)
def test_each_format_reads_to_the_same_normalised_rows(tmp_path, suffix, first_line):
    path = tmp_path / f"reviews{suffix}"
    if suffix in (".csv", ".tsv"):
        pd.DataFrame(RECORDS).to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".ndjson"):
        write_jsonl(path, RECORDS)
    else:
        pd.DataFrame(RECORDS).to_parquet(path)
    rows = read_dataset(path)
    assert list(rows.columns) == ROW_COLUMNS
    assert rows["id"].tolist() == ["r1", "r2", "r3"]
    assert rows["text"].tolist() == [r["text"] for r in RECORDS]
    assert rows["label"].tolist() == [2, 0, 1]
    assert rows["label"].dtype == "int64"
    assert rows["label_raw"].tolist() == ["positive", "0", "neu"]
    assert rows["language"].tolist() == ["en", "fr", "pt"]
    assert rows["language_raw"].tolist() == ["English", "fr", "pt-BR"]
    assert values(rows["split"]) == ["train", "val", None]
    assert rows["source"].tolist() == [str(path)] * 3
    assert rows["line"].tolist() == [first_line, first_line + 1, first_line + 2]


def test_csv_headers_are_case_and_space_insensitive_and_extra_columns_ignored(tmp_path):
    path = write_text(tmp_path / "x.csv", " Text ,LABEL,Language,domain\nnice,2,de,products\n")
    rows = read_dataset(path)
    assert rows.loc[0, ["text", "label", "language"]].tolist() == ["nice", 2, "de"]
    assert "domain" not in rows.columns


def test_csv_keeps_literal_na_strings_as_text(tmp_path):
    # pandas would turn "NA"/"null" into NaN by default; they are real words in reviews.
    path = write_text(tmp_path / "x.csv", "text,label,language\nNA,positive,en\nnull,negative,en\n")
    assert read_dataset(path)["text"].tolist() == ["NA", "null"]


def test_missing_ids_are_generated_from_file_and_line(tmp_path):
    csv = write_text(tmp_path / "a.csv", "text,label,language\nx,0,en\ny,1,en\n")
    assert read_dataset(csv)["id"].tolist() == ["a.csv:2", "a.csv:3"]
    # JSONL: blank lines are skipped but line numbers stay physical; an id given on one record only.
    jsonl = write_text(
        tmp_path / "b.jsonl",
        '{"text": "x", "label": 0, "language": "en"}\n\n{"id": "given", "text": "y", "label": 1, "language": "en"}\n'
        '{"id": "", "text": "z", "label": 2, "language": "en"}\n',
    )
    rows = read_dataset(jsonl)
    assert rows["id"].tolist() == ["b.jsonl:1", "given", "b.jsonl:4"]
    assert rows["line"].tolist() == [1, 3, 4]
    parquet = tmp_path / "c.parquet"
    pd.DataFrame({"id": ["p", None], "text": ["x", "y"], "label": [0, 1], "language": ["en", "en"]}).to_parquet(parquet)
    assert read_dataset(parquet)["id"].tolist() == ["p", "c.parquet:2"]


def test_numeric_labels_from_jsonl_and_parquet(tmp_path):
    jsonl = write_jsonl(tmp_path / "n.jsonl", [{"text": "a", "label": 2.0, "language": "en"}, {"text": "b", "label": 0, "language": "en"}])
    assert read_dataset(jsonl)["label"].tolist() == [2, 0]
    parquet = tmp_path / "n.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": [1, 2], "language": ["en", "es"]}).to_parquet(parquet)
    assert read_dataset(parquet)["label"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("train", "train"),
        (" Train ", "train"),
        ("validation", "val"),
        ("valid", "val"),
        ("dev", "val"),
        ("VAL", "val"),
        ("test", "test"),
        ("", None),
        ("  ", None),
        (None, None),
        (float("nan"), None),
        ("holdout", "holdout"),  # kept as written: validation quarantines it
    ],
)
def test_normalise_split(value, expected):
    assert normalise_split(value) == expected


def test_tsv_keeps_commas_and_quotes_and_reads_a_field_of_any_length(tmp_path):
    article = "A long article, with commas. " * 9000  # 261,000 characters: over csv's default field limit
    path = write_text(tmp_path / "long.tsv", f"text\tlabel\tlanguage\nHello, world\tpositive\ten\n{article}\t0\tfr\n")
    rows = read_dataset(path)
    assert rows["text"].tolist() == ["Hello, world", article]
    assert rows["label"].tolist() == [2, 0] and rows["id"].tolist() == ["long.tsv:2", "long.tsv:3"]


def test_folder_of_mixed_files_is_one_dataset(tmp_path):
    root = tmp_path / "data"
    write_text(root / "b.csv", "text,label,language\nb1,0,en\nb2,1,en\n")
    write_text(root / "d.tsv", "text\tlabel\tlanguage\nd1\t2\tfr\n")
    write_jsonl(root / "a" / "part.jsonl", [{"text": "a1", "label": "positive", "language": "de"}])
    frame = pd.DataFrame({"text": ["c1"], "label": [2], "language": ["es"]})
    frame.to_parquet(root / "c.parquet")
    write_text(root / "README.md", "not data")
    write_text(root / "notes.txt", "not data either")
    rows = read_dataset(root)
    assert rows["text"].tolist() == ["a1", "b1", "b2", "c1", "d1"]  # sorted by path
    assert [Path(s).name for s in rows["source"]] == ["part.jsonl", "b.csv", "b.csv", "c.parquet", "d.tsv"]
    assert rows["id"].is_unique


def test_tweeteval_folder(tmp_path):
    root = tmp_path / "umsab"
    write_tweeteval(root, "english", "train", "good one\n\n@user bad\n", "2\n1\n0\n")
    write_tweeteval(root, "english", "val", "meh", "1")  # last line without newline
    write_tweeteval(root, "french", "test", "super\r\nnul\r\n", "2\r\n0\r\n")  # CRLF
    write_text(root / "english" / "mapping.txt", "0 negative\n")  # other files are ignored
    rows = read_dataset(root)
    assert len(rows) == 6
    assert rows["id"].tolist() == [
        "english/train:1", "english/train:2", "english/train:3", "english/val:1", "french/test:1", "french/test:2",
    ]
    assert rows["text"].tolist() == ["good one", "", "@user bad", "meh", "super", "nul"]
    assert rows["label"].tolist() == [2, 1, 0, 1, 2, 0]
    assert rows["language"].tolist() == ["en"] * 4 + ["fr"] * 2
    assert rows["language_raw"].tolist() == ["english"] * 4 + ["french"] * 2
    assert rows["split"].tolist() == ["train"] * 3 + ["val", "test", "test"]
    assert rows["line"].tolist() == [1, 2, 3, 1, 1, 2]
    assert Path(rows.loc[0, "source"]).name == "train_text.txt"


def test_tweeteval_keeps_unicode_line_separators_inside_a_tweet(tmp_path):
    root = tmp_path / "tw"
    write_tweeteval(root, "en", "train", "one\u2028still one\x0bsame\nsecond\n", "2\n0\n")
    rows = read_dataset(root)
    assert rows["text"].tolist() == ["one\u2028still one\x0bsame", "second"]


def test_real_sample_reads_every_record():
    rows = read_dataset(SAMPLE)
    physical = sum(1 for line in (SAMPLE / "reviews.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(rows) == physical == 648
    assert rows["id"].is_unique
    assert (rows["label"] != INVALID_LABEL).all()
    assert sorted(rows["language"].unique()) == ["ar", "de", "en", "es", "fr", "hi", "pt", "ru", "zh"]


# --- unreadable input: one DataError line naming the file -----------------------------------


def _missing(tmp):
    return tmp / "nope.csv", "nope.csv", "no such file or folder"


def _missing_columns_jsonl(tmp):
    return write_jsonl(tmp / "m.jsonl", [{"body": "x"}]), "m.jsonl", "missing column(s) text, label, language"


def _missing_column_parquet(tmp):
    pd.DataFrame({"text": ["x"], "language": ["en"]}).to_parquet(tmp / "m.parquet")
    return tmp / "m.parquet", "m.parquet", "missing column(s) label"


def _latin1_csv(tmp):
    path = tmp / "latin.csv"
    path.write_bytes("text,label,language\ncaf\xe9 cr\xe8me,positive,fr\n".encode("latin-1"))
    return path, "latin.csv:2", "broken CSV line (not UTF-8 text)"


def _latin1_jsonl(tmp):
    path = tmp / "latin.jsonl"
    path.write_bytes('{"text": "caf\xe9", "label": 2, "language": "fr"}\n'.encode("latin-1"))
    return path, "latin.jsonl:1", "broken JSON line (not UTF-8 text)"


def _utf16_csv(tmp):
    path = tmp / "wide.csv"
    path.write_bytes("text,label,language\nhi,2,en\n".encode("utf-16"))
    return path, "wide.csv:1", "the header is not UTF-8 text"


def _broken_json(tmp):
    good = json.dumps({"text": "a", "label": 0, "language": "en"})
    path = write_text(tmp / "broken.jsonl", f"{good}\n{good}\n{{\"text\": \"a\", \"label\": \n{good}\n")
    return path, "broken.jsonl:3", "broken JSON line (invalid JSON: "


def _json_array_line(tmp):
    return write_text(tmp / "arr.jsonl", '[1, 2]\n'), "arr.jsonl:1", "broken JSON line (not a JSON object)"


def _zero_row_parquet(tmp):
    pd.DataFrame({"text": [], "label": [], "language": []}).to_parquet(tmp / "z.parquet")
    return tmp / "z.parquet", "z.parquet", "empty file (no rows)"


def _tweeteval_mismatch(tmp):
    write_tweeteval(tmp / "tw", "english", "train", "a\nb\nc\n", "0\n1\n")
    return tmp / "tw", "train_text.txt", "3 lines but train_labels.txt has 2"


def _tweeteval_mismatch_blank_last_line(tmp):
    # A blank line before EOF is a record (empty tweet), so the counts differ: 3 vs 2.
    write_tweeteval(tmp / "tw", "english", "test", "a\nb\n\n", "0\n1\n")
    return tmp / "tw", "test_text.txt", "3 lines but test_labels.txt has 2"


def _tweeteval_no_partner(tmp):
    write_text(tmp / "tw" / "german" / "val_text.txt", "a\n")
    return tmp / "tw", "val_text.txt", "has no partner file val_labels.txt"


def _tweeteval_labels_without_text(tmp):
    write_tweeteval(tmp / "tw", "german", "train", "a\n", "0\n")
    write_text(tmp / "tw" / "german" / "test_labels.txt", "0\n")
    return tmp / "tw", "test_labels.txt", "has no partner file test_text.txt"


def _tweeteval_empty(tmp):
    write_tweeteval(tmp / "tw", "hindi", "train", "", "")
    return tmp / "tw", "train_text.txt", "empty file"


def _tweeteval_latin1(tmp):
    write_tweeteval(tmp / "tw", "french", "train", "x\n", "0\n")
    (tmp / "tw" / "french" / "train_text.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    return tmp / "tw", "train_text.txt:1", "broken text line (not UTF-8 text)"


def _empty_folder(tmp):
    (tmp / "nothing").mkdir()
    return tmp / "nothing", "nothing", "empty folder"


def _folder_without_data_files(tmp):
    write_text(tmp / "docs" / "README.md", "hi")
    write_text(tmp / "docs" / "sub" / "data.json", "[]")
    return tmp / "docs", "docs", "empty folder"


def _folder_with_one_bad_file(tmp):
    write_text(tmp / "mixed" / "a.csv", "text,label,language\nx,0,en\n")
    write_text(tmp / "mixed" / "b.csv", "text,label\nx,0\n")
    return tmp / "mixed", "b.csv", "missing column(s) language"


# One text file each: case id, file name, content, what the message must say.
TEXT_FILE_CASES = [
    # .txt has no label column: training reads it only in the TweetEval layout.
    ("unknown_suffix", "data.txt", "text,label,language\n", "unsupported format '.txt' (supported: .csv, .tsv"),
    ("json_not_jsonl", "data.json", "[]", "unsupported format '.json'"),
    ("no_suffix", "reviews", "x", "unsupported format '(no suffix)'"),
    ("missing_column_csv", "m.csv", "text,label\nx,0\n", "missing column(s) language (found: text, label)"),
    ("empty_csv", "e.csv", "", "empty file"),
    ("empty_jsonl", "e.jsonl", "", "empty file"),
    ("empty_parquet", "e.parquet", "", "empty file"),
    ("header_only_csv", "h.csv", "text,label,language\n", "empty file (no rows)"),
    ("blank_lines_jsonl", "b.jsonl", "\n  \n\n", "empty file (no rows)"),
    ("blank_lines_csv", "b.csv", "\n\n", "empty file"),
    ("header_only_tsv", "h.tsv", "text\tlabel\tlanguage\n", "empty file (no rows)"),
    ("too_many_fields_csv", "wide.csv", "text,label,language\na,0,en\nb,1,en,extra\n",
     "wide.csv:3: broken CSV line (4 fields, the header has 3)"),
    ("missing_column_tsv", "m.tsv", "text\tlabel\nx\t0\n", "missing column(s) language (found: text, label)"),
    ("garbage_parquet", "g.parquet", "this is not parquet at all", "cannot read parquet"),
]


def _text_file(name: str, content: str, phrase: str):
    def make(tmp):
        return write_text(tmp / name, content), name, phrase

    return make


BUILT_CASES = [
    _missing,
    _missing_columns_jsonl,
    _missing_column_parquet,
    _latin1_csv,
    _latin1_jsonl,
    _utf16_csv,
    _broken_json,
    _json_array_line,
    _zero_row_parquet,
    _tweeteval_mismatch,
    _tweeteval_mismatch_blank_last_line,
    _tweeteval_no_partner,
    _tweeteval_labels_without_text,
    _tweeteval_empty,
    _tweeteval_latin1,
    _empty_folder,
    _folder_without_data_files,
    _folder_with_one_bad_file,
]
BAD_INPUTS = [pytest.param(make, id=make.__name__.lstrip("_")) for make in BUILT_CASES] + [
    pytest.param(_text_file(name, content, phrase), id=case) for case, name, content, phrase in TEXT_FILE_CASES
]


@pytest.mark.parametrize("make", BAD_INPUTS)
def test_unreadable_input_raises_one_line_data_error(tmp_path, make):
    path, names, phrase = make(tmp_path)
    with pytest.raises(DataError) as info:
        read_dataset(path)
    message = str(info.value)
    assert names in message
    assert phrase in message
    assert "\n" not in message
    assert "Traceback" not in message


# --- readable but bad records: marked, never dropped ----------------------------------------


def _bad_labels_csv(tmp):
    path = write_text(
        tmp / "labels.csv",
        "text,label,language\na,positive,en\nb,5,en\nc,,en\nd,very good,en\ne,-1,en\n",
    )
    return path, 5, {"label": [2, -1, -1, -1, -1], "label_raw": ["positive", "5", "", "very good", "-1"]}


def _bad_languages_jsonl(tmp):
    path = write_jsonl(
        tmp / "langs.jsonl",
        [
            {"text": "a", "label": 0, "language": "klingon"},
            {"text": "b", "label": 0, "language": ""},
            {"text": "c", "label": 0, "language": "Deutsch"},
            {"text": "d", "label": 0, "language": "de"},
        ],
    )
    return path, 4, {"language": ["klingon", "", "deutsch", "de"], "language_raw": ["klingon", "", "Deutsch", "de"]}


def _empty_texts_csv(tmp):
    path = write_text(tmp / "empty.csv", 'text,label,language\n"",0,en\n"   ",1,en\nok,2,en\n')
    return path, 3, {"text": ["", "   ", "ok"]}


def _null_and_missing_fields_jsonl(tmp):
    path = write_text(
        tmp / "nulls.jsonl",
        '{"text": null, "label": null, "language": null}\n'
        '{"label": 1, "language": "en"}\n'
        '{"text": "fine", "label": 2, "language": "en", "split": "banana"}\n'
        '{"text": 42, "label": "2", "language": "en"}\n',
    )
    return path, 4, {"text": ["", "", "fine", "42"], "label": [-1, 1, 2, 2], "split": [None, None, "banana", None]}


def _short_csv_row(tmp):
    # Fewer fields than the header: the row is padded, not dropped.
    path = write_text(tmp / "short.csv", "text,label,language\nhello,positive\nbye,negative,en\n")
    return path, 2, {"text": ["hello", "bye"], "language": ["", "en"]}


def _duplicate_ids_csv(tmp):
    path = write_text(tmp / "dups.csv", "id,text,label,language\n7,a,0,en\n7,b,1,en\n7,a,0,en\n")
    return path, 3, {"id": ["7", "7", "7"]}


def _tweeteval_bad_labels_and_blank_tweets(tmp):
    write_tweeteval(tmp / "tw", "spanish", "train", "hola\n\n   \nadios\n", "2\nx\n1\n\n")
    return tmp / "tw", 4, {"text": ["hola", "", "   ", "adios"], "label": [2, -1, 1, -1], "language": ["es"] * 4}


READABLE_BAD = [
    _bad_labels_csv,
    _bad_languages_jsonl,
    _empty_texts_csv,
    _null_and_missing_fields_jsonl,
    _short_csv_row,
    _duplicate_ids_csv,
    _tweeteval_bad_labels_and_blank_tweets,
]


@pytest.mark.parametrize("make", READABLE_BAD, ids=lambda f: f.__name__.lstrip("_"))
def test_bad_records_are_kept_and_marked(tmp_path, make):
    path, physical_records, expected_columns = make(tmp_path)
    rows = read_dataset(path)
    assert len(rows) == physical_records  # no row lost
    assert list(rows.columns) == ROW_COLUMNS
    for column, expected in expected_columns.items():
        assert values(rows[column]) == expected, column


# --- bugs -----------------------------------------------------------------------------------


def test_generated_ids_are_unique_across_subfolders(tmp_path):
    root = tmp_path / "by_language"
    write_text(root / "en" / "reviews.csv", "text,label,language\nnice,2,en\nbad,0,en\n")
    write_text(root / "fr" / "reviews.csv", "text,label,language\nsuper,2,fr\nnul,0,fr\n")
    rows = read_dataset(root)
    assert len(rows) == 4
    assert rows["id"].is_unique, rows["id"].tolist()


def test_csv_line_numbers_are_physical_lines(tmp_path):
    path = write_text(tmp_path / "multi.csv", 'text,label,language\n"two\nlines",positive,en\n\nthird,bogus,en\n')
    rows = read_dataset(path)
    assert rows["text"].tolist() == ["two\nlines", "third"]
    assert rows["line"].tolist() == [2, 5]


def test_jsonl_with_utf8_bom_is_read(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"text": "hi", "label": 2, "language": "en"}\n')
    assert read_dataset(path)["text"].tolist() == ["hi"]


def test_csv_with_utf8_bom_is_read(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + b"text,label,language\nhi,2,en\n")
    assert read_dataset(path)["text"].tolist() == ["hi"]
