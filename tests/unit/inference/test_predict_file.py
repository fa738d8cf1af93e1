"""predict_file: a file labelled chunk by chunk is the same file whatever the chunk size; bad rows
stay in place unscored; any failure leaves the target path as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentibridge.data import reading
from sentibridge.errors import DataError
from sentibridge.inference.predict import OUTPUT_COLUMNS, PredictSummary, predict_file
from sentibridge.labels import SCORE_COLUMNS
from sentibridge.model.instructions import LABEL_WORDS

# 8 records: bad ones (empty text, missing text, bad language) between good ones.
CSV = (
    "id,text,language\n"
    "a,good one,en\n"
    "b,,en\n"
    "c,two words,\n"
    "d,three word text,fr\n"
    "e,bad language,english\n"
    "f,x,de\n"
    "g\n"
    "h,last text here,es\n"
)
GOOD = {0: "good one", 2: "two words", 3: "three word text", 5: "x", 7: "last text here"}
ERRORS = {1: "empty text", 4: "unknown language code 'english'", 6: "missing text"}


class _StandIn:
    """Label = number of words mod 3, probability 0.7 on it; records the tables it was given."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[pd.DataFrame] = []
        self.fail_on_call = fail_on_call

    def predict_rows(self, rows: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
        self.calls.append(rows.copy())
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("model fell over")
        pred = np.array([len(t.split()) % 3 for t in rows["text"]])
        probs = np.full((len(rows), 3), 0.15)
        probs[np.arange(len(rows)), pred] = 0.7
        return pd.DataFrame({"id": rows["id"], "pred": pred, **{c: probs[:, k] for k, c in enumerate(SCORE_COLUMNS)}})


def _expected_pred(text: str) -> int:
    return len(text.split()) % 3


def _input(tmp_path: Path, content: str = CSV, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", newline="")
    return path


def _read_back(path: Path) -> pd.DataFrame:
    if path.suffix in (".csv", ".tsv"):
        frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        frame = frame.replace("", None)
    elif path.suffix == ".jsonl":
        frame = pd.DataFrame([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()])
    elif path.suffix == ".json":
        frame = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    else:
        frame = pd.read_parquet(path).astype(object)
    return frame.astype(object).where(frame.notna(), None)


def _check_rows(frame: pd.DataFrame) -> None:
    """Every input row once, in order, good ones labelled by the stand-in, bad ones bare."""
    assert list(frame.columns) == OUTPUT_COLUMNS
    assert [int(r) for r in frame["row"]] == list(range(8))
    assert list(frame["id"]) == list("abcdefgh")
    for record in frame.to_dict("records"):
        row = int(record["row"])
        if row in GOOD:
            pred = _expected_pred(GOOD[row])
            assert (record["text"], record["label"], int(record["label_id"]), record["error"]) == (GOOD[row], LABEL_WORDS[pred], pred, None)
            assert float(record[SCORE_COLUMNS[pred]]) == pytest.approx(0.7)
        else:
            assert (record["text"], record["label"], record["label_id"], record["error"]) == (None, None, None, ERRORS[row])
            assert all(record[c] is None for c in SCORE_COLUMNS)


@pytest.mark.parametrize("chunk_rows", [1, 2, 4, 8, 3, 1000])  # 4 and 8 divide the 8 rows exactly
def test_chunks_of_any_size_give_every_row_in_order(tmp_path, chunk_rows):
    model = _StandIn()
    summary = predict_file(model, _input(tmp_path), tmp_path / "out.csv", chunk_rows=chunk_rows, progress=False)
    assert summary == PredictSummary(rows=8, predicted=5, errors=3, first_errors=((1, ERRORS[1]), (4, ERRORS[4]), (6, ERRORS[6])))
    _check_rows(_read_back(tmp_path / "out.csv"))
    # The model saw each good row once, never a bad one, never more than a chunk at a time.
    assert [t for call in model.calls for t in call["text"]] == list(GOOD.values())
    assert all(0 < len(call) <= chunk_rows for call in model.calls)
    assert len(model.calls) == len({row // chunk_rows for row in GOOD})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_every_output_format_reads_back_the_same_rows(tmp_path, suffix):
    # chunk_rows=2: the chunk of rows 0-1 has a bad row, and Parquet must keep one schema throughout.
    path = tmp_path / f"out{suffix}"
    predict_file(_StandIn(), _input(tmp_path), path, chunk_rows=2, progress=False)
    _check_rows(_read_back(path))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_parquet_keeps_its_types_when_the_first_chunk_is_all_bad(tmp_path):
    path = tmp_path / "out.parquet"
    predict_file(_StandIn(), _input(tmp_path, "text,language\n,en\nfine,xx1\nok words,en\n"), path, chunk_rows=1, progress=False)
    frame = pd.read_parquet(path)
    assert frame["label"].tolist()[2] == LABEL_WORDS[2] and frame["label_id"].tolist()[2] == 2
    assert frame["score_negative"].dtype == np.float64 and pd.isna(frame["label_id"].iloc[0])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
def test_the_bytes_do_not_depend_on_the_chunk_size(tmp_path, suffix):
    one, whole = tmp_path / f"one{suffix}", tmp_path / f"whole{suffix}"
    predict_file(_StandIn(), _input(tmp_path), one, chunk_rows=1, progress=False)
    predict_file(_StandIn(), _input(tmp_path), whole, chunk_rows=100, progress=False)
    assert one.read_bytes() == whole.read_bytes()


def test_first_errors_stop_at_the_limit_across_chunks(tmp_path):
    content = "text\n" + "".join("\n" if i % 2 else f"t{i}\n" for i in range(20))
    summary = predict_file(_StandIn(), _input(tmp_path, content), tmp_path / "out.jsonl", chunk_rows=3, progress=False, errors_shown=4)
    assert (summary.rows, summary.predicted, summary.errors) == (20, 10, 10)
    assert summary.first_errors == tuple((row, "empty text") for row in (1, 3, 5, 7))


def test_a_model_failing_mid_way_leaves_the_existing_output_untouched(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("previous run\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="fell over"):
        predict_file(_StandIn(fail_on_call=2), _input(tmp_path), out, chunk_rows=2, progress=False)
    assert out.read_text(encoding="utf-8") == "previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_a_model_failing_mid_way_leaves_no_output(tmp_path):
    with pytest.raises(RuntimeError):
        predict_file(_StandIn(fail_on_call=3), _input(tmp_path), tmp_path / "out.parquet", chunk_rows=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_bad_utf8_found_mid_stream_costs_one_row(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "BLOCK", 8)  # read in small blocks, as a large file would be
    content = ("text\n" + "fine\n" * 5).encode() + b"caf\xe9\n" + b"more\n"
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    model = _StandIn()
    summary = predict_file(model, path, tmp_path / "out.json", chunk_rows=2, progress=False)
    assert summary == PredictSummary(rows=7, predicted=6, errors=1, first_errors=((5, "not UTF-8 text"),))
    frame = _read_back(tmp_path / "out.json")
    assert frame["text"].tolist() == ["fine"] * 5 + [None, "more"]
    assert len(model.calls) == 4  # it did stream: one call per chunk of two rows


def test_missing_text_column_fails_before_the_model_runs(tmp_path):
    model = _StandIn()
    with pytest.raises(DataError, match="no 'text' column"):
        predict_file(model, _input(tmp_path, "body\nhello\n"), tmp_path / "out.csv", progress=False)
    assert model.calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_unsupported_output_suffix_fails_before_the_model_runs(tmp_path):
    model = _StandIn()
    with pytest.raises(DataError, match="unsupported output format"):
        predict_file(model, _input(tmp_path), tmp_path / "out.xlsx", progress=False)
    assert model.calls == []


@pytest.mark.parametrize(("suffix", "expected"), [(".csv", ",".join(OUTPUT_COLUMNS) + "\n"), (".json", "[]\n"), (".jsonl", "")])
def test_empty_input_gives_an_empty_output(tmp_path, suffix, expected):
    out = tmp_path / f"out{suffix}"
    summary = predict_file(_StandIn(), _input(tmp_path, "text\n"), out, progress=False)
    assert summary == PredictSummary(rows=0, predicted=0, errors=0, first_errors=())
    assert out.read_text(encoding="utf-8") == expected


def test_empty_input_gives_a_parquet_with_the_output_columns(tmp_path):
    out = tmp_path / "out.parquet"
    predict_file(_StandIn(), _input(tmp_path, "", "in.txt"), out, progress=False)
    assert list(pd.read_parquet(out).columns) == OUTPUT_COLUMNS


# --- one file mixing every per-row case: the rest of the file is labelled --------------------

#: A 244,000-character news article, as in the failed job: commas, quotes and line breaks inside.
ARTICLE = ('Breaking: the council voted, 7 to 2, "to fund the bridge".\nMore in a moment. ' * 3200)[:244_000]
#: (id, text, language) per row; ``None`` is a blank line. The text of "latin" is written in
#: Latin-1, so that line is not UTF-8.
MIXED = [
    ("ok", "I love this phone", "en"),
    ("long", ARTICLE, "en"),
    ("latin", "café crème", "fr"),
    ("empty", "", "en"),
    ("lang", "hello there", "english"),
    None,
    ("es", "Servicio pésimo, nunca más", "es"),
]
MIXED_ERRORS = {2: "not UTF-8 text", 3: "empty text", 4: "unknown language code 'english'", 5: "empty text"}


def _mixed_input(tmp_path: Path, suffix: str) -> Path:
    """``MIXED`` as a CSV, TSV or JSONL file, line by line, the "latin" line in Latin-1."""
    import csv
    import io

    def line(values: tuple[str, ...] | dict) -> str:
        if isinstance(values, dict):
            return json.dumps(values, ensure_ascii=False) + "\n"
        out = io.StringIO()
        csv.writer(out, delimiter="\t" if suffix == ".tsv" else ",", lineterminator="\n").writerow(values)
        return out.getvalue()

    chunks = [] if suffix == ".jsonl" else [line(("id", "text", "language")).encode()]
    for row in MIXED:
        if row is None:
            chunks.append(b"\n")
            continue
        text = line(dict(zip(("id", "text", "language"), row)) if suffix == ".jsonl" else row)
        chunks.append(text.encode("latin-1" if row[0] == "latin" else "utf-8"))
    path = tmp_path / f"mixed{suffix}"
    path.write_bytes(b"".join(chunks))
    return path


class _Truncating(_StandIn):
    """The stand-in, with a model whose window holds ``max_chars`` characters of text."""

    max_chars = 1000

    def predict_rows(self, rows: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
        scored = super().predict_rows(rows, progress)
        return scored.assign(truncated=[len(t) > self.max_chars for t in rows["text"]])


def _check_mixed(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == OUTPUT_COLUMNS
    assert [int(r) for r in frame["row"]] == list(range(len(MIXED)))
    assert list(frame["id"]) == ["ok", "long", "2", "empty", "lang", "5", "es"]  # no id: the row number
    for record in frame.to_dict("records"):
        row = int(record["row"])
        if row in MIXED_ERRORS:
            assert (record["text"], record["label"], record["truncated"], record["error"]) == (None, None, None, MIXED_ERRORS[row])
        else:
            assert record["text"] == MIXED[row][1] and record["label"] in LABEL_WORDS and record["error"] is None
            assert str(record["truncated"]) == str(row == 1)  # CSV reads back "True"/"False"


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_a_mixed_file_labels_every_good_row_and_counts_the_rest(tmp_path, suffix):
    model = _Truncating()
    out = tmp_path / "out.csv"
    summary = predict_file(model, _mixed_input(tmp_path, suffix), out, chunk_rows=3, progress=False)
    assert summary == PredictSummary(
        rows=7, predicted=3, errors=4, first_errors=tuple(sorted(MIXED_ERRORS.items())), truncated=1
    )
    assert not summary.failed
    assert [t for call in model.calls for t in call["text"]] == ["I love this phone", ARTICLE, "Servicio pésimo, nunca más"]
    _check_mixed(_read_back(out))


def test_a_mixed_file_with_a_tiny_gemma_counts_truncation_in_tokens(tmp_path, gemma_tokenizer, tiny_gemma):
    """The real serving path: the article is cut to ``max_length`` tokens, scored and labelled."""
    from sentibridge.inference.predict import predict_rows

    class TinyScorer:
        def __init__(self) -> None:
            self.model = tiny_gemma(0)

        def predict_rows(self, rows: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
            return predict_rows(self.model, gemma_tokenizer, rows, 128, 4, "cpu", "fp32", progress=False)

    out = tmp_path / "out.parquet"
    summary = predict_file(TinyScorer(), _mixed_input(tmp_path, ".csv"), out, progress=False)
    assert (summary.rows, summary.predicted, summary.errors, summary.truncated) == (7, 3, 4, 1)
    frame = pd.read_parquet(out)
    assert frame["truncated"].tolist()[:2] == [False, True] and frame["text"].iloc[1] == ARTICLE  # the whole text is kept
    assert frame.loc[[0, 1, 6], SCORE_COLUMNS].sum(axis=1).round(5).tolist() == [1.0, 1.0, 1.0]


def test_a_file_where_every_row_fails_is_a_failed_job(tmp_path):
    summary = predict_file(_StandIn(), _input(tmp_path, "text,language\n,en\nhi,xx1\n"), tmp_path / "out.csv", progress=False)
    assert (summary.rows, summary.predicted, summary.errors) == (2, 0, 2) and summary.failed
    assert (tmp_path / "out.csv").is_file()  # the errors are still written out
    assert not predict_file(_StandIn(), _input(tmp_path, "text\n"), tmp_path / "empty.csv", progress=False).failed


def test_parquet_input_is_labelled(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "PARQUET_BATCH_ROWS", 3)  # batches that do not line up with chunks
    source = tmp_path / "in.parquet"
    pd.DataFrame(
        {"id": list("abcdefgh"), "text": [GOOD.get(i, "bad language" if i == 4 else None) for i in range(8)],
         "language": ["en", "en", None, "fr", "english", "de", None, "es"], "extra": range(8)}
    ).to_parquet(source)
    summary = predict_file(_StandIn(), source, tmp_path / "out.jsonl", chunk_rows=2, progress=False)
    assert (summary.rows, summary.predicted, summary.errors) == (8, 5, 3)
    frame = _read_back(tmp_path / "out.jsonl")
    assert list(frame["id"]) == list("abcdefgh")
    assert dict(zip(frame["row"], frame["error"])) == {
        0: None, 1: "missing text", 2: None, 3: None, 4: "unknown language code 'english'", 5: None, 6: "missing text", 7: None
    }
