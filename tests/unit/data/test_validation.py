"""Row validation (Great Expectations): every bad row is quarantined with its reason, none is lost.

GE costs a few seconds to import and ~0.2 s per run, so the table of cases is validated once
per module and each test reads its part of the result.
"""

from __future__ import annotations

import pandas as pd
import pytest

from sentibridge.config import DataConfig
from sentibridge.errors import DataError
from sentibridge.data.ingest import ROW_COLUMNS, read_dataset
from sentibridge.data.validation import REASONS, check_quarantine_limit, validate_rows

CFG = DataConfig(min_text_chars=3, max_text_chars=20)


def row(id, text, label=2, language="en", split=None, source="mem.csv", line=0) -> dict:
    return {
        "id": id,
        "text": text,
        "label": label,
        "label_raw": str(label),
        "language": language,
        "language_raw": language,
        "split": split,
        "source": source,
        "line": line,
    }


# id -> (row, expected first reason or None when valid, expected full reasons)
CASES = [
    row("ok", "good product"),
    row("ok_padded", "   abc   "),  # stripped length 3 == min
    row("ok_max_padded", "x" * 20 + "    "),  # stripped length 20 == max: padding must not count
    row("ok_val", "fine thing", label=1, language="fr", split="val"),
    row("ok_test", "bad thing", label=0, language="zh", split="test"),
    row("empty", ""),
    row("blank", " \t\n "),
    row("short", " ab "),
    row("long", "y" * 21),
    row("long_inner_space", "a" * 10 + " " * 5 + "b" * 10),
    row("bad_label", "nice enough", label=-1),
    row("bad_lang", "nice enough", language="klingon"),
    row("empty_lang", "nice enough", language=""),
    row("bad_split", "nice enough", split="holdout"),
    row("multi", "", label=-1, language="xx", split="nope"),
    row("dup", "first copy"),
    row("dup", "second copy"),
    row("dup3", "a copy"),
    row("dup3", "b copy"),
    row("dup3", "c copy"),
]
# lines make each row findable in quarantine messages
for number, case in enumerate(CASES, start=2):
    case["line"] = number

EXPECTED_REASONS = {
    "empty": "empty_text;text_too_short",
    "blank": "empty_text;text_too_short",
    "short": "text_too_short",
    "long": "text_too_long",
    "long_inner_space": "text_too_long",
    "bad_label": "label_not_in_set",
    "bad_lang": "unknown_language",
    "empty_lang": "unknown_language",
    "bad_split": "unknown_split",
    "multi": "empty_text;text_too_short;label_not_in_set;unknown_language;unknown_split",
}
VALID_IDS = {"ok", "ok_padded", "ok_max_padded", "ok_val", "ok_test"}


@pytest.fixture(scope="module")
def result():
    return validate_rows(pd.DataFrame(CASES), CFG)


def test_conservation(result):
    assert result.rows_in == len(CASES)
    assert result.rows_valid + result.rows_quarantined == result.rows_in
    summary = result.summary()
    assert summary["rows_in"] == len(CASES)
    assert summary["rows_valid"] == len(VALID_IDS)
    assert summary["rows_quarantined"] == len(CASES) - len(VALID_IDS)
    assert sum(summary["quarantine_reasons"].values()) == summary["rows_quarantined"]


def test_valid_rows_are_exactly_the_good_ones(result):
    assert set(result.valid["id"]) == VALID_IDS
    assert list(result.valid.columns) == ROW_COLUMNS  # no helper columns leak out
    assert list(result.valid.index) == list(range(len(result.valid)))
    # texts are kept as written (stripping is only for the checks)
    assert result.valid.set_index("id").loc["ok_padded", "text"] == "   abc   "


def test_rows_without_a_split_are_valid(result):
    unsplit = result.valid[result.valid["split"].isna()]
    assert set(unsplit["id"]) == {"ok", "ok_padded", "ok_max_padded"}


@pytest.mark.parametrize("row_id, reasons", sorted(EXPECTED_REASONS.items()))
def test_each_bad_row_is_quarantined_with_its_reasons(result, row_id, reasons):
    q = result.quarantine.set_index("id")
    assert q.loc[row_id, "reasons"] == reasons
    assert q.loc[row_id, "reason"] == reasons.split(";")[0]  # the first in priority order


def test_reason_counts(result):
    reasons = result.reasons
    assert reasons["empty_text"] == 3  # empty, blank, multi
    assert reasons["text_too_short"] == 1
    assert reasons["text_too_long"] == 2
    assert reasons["label_not_in_set"] == 1
    assert reasons["unknown_language"] == 2
    assert reasons["unknown_split"] == 1
    assert set(reasons) <= set(REASONS)


def test_duplicate_ids_are_quarantined(result):
    q = result.quarantine
    dup_rows = q[q["reason"] == "duplicate_id"]
    counts = pd.DataFrame(CASES)["id"].value_counts()
    flagged = dup_rows["id"].value_counts()
    # only ids that really repeat are flagged, and at least every repeat of them is
    assert set(flagged.index) == {"dup", "dup3"}
    for dup_id in ("dup", "dup3"):
        assert flagged[dup_id] >= counts[dup_id] - 1
    assert not (result.valid["id"].duplicated()).any()


def test_quarantine_keeps_the_row_and_where_it_came_from(result):
    q = result.quarantine
    assert list(q.columns) == ROW_COLUMNS + ["reason", "reasons"]
    bad_label = q.set_index("id").loc["bad_label"]
    assert bad_label["source"] == "mem.csv"
    assert bad_label["line"] == 2 + [c["id"] for c in CASES].index("bad_label")
    assert bad_label["text"] == "nice enough"


def test_empty_table_has_nothing_to_validate():
    empty = pd.DataFrame({c: pd.Series([], dtype=object) for c in ROW_COLUMNS})
    out = validate_rows(empty, CFG)
    assert (out.rows_in, out.rows_valid, out.rows_quarantined) == (0, 0, 0)
    assert out.reasons == {}


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_ingested_file_round_trip_loses_no_row(tmp_path, suffix):
    # Six physical records, three of them bad: reading then validating (the ingest step of
    # `sentibridge validate`) keeps all six, from CSV or TSV alike.
    path = tmp_path / f"reviews{suffix}"
    content = (
        "text,label,language,split\n"
        "great value,positive,en,\n"
        "awful,negative,english,train\n"
        ",neutral,en,\n"
        "fine,meh,en,\n"
        "ok ok,1,klingon,\n"
        "bof,neutral,fr,dev\n"
    )
    path.write_text(content.replace(",", "\t") if suffix == ".tsv" else content, encoding="utf-8")
    rows = read_dataset(path)
    result = validate_rows(rows, DataConfig())
    assert result.rows_in == len(rows) == 6
    assert result.rows_valid == 3
    assert dict(zip(result.quarantine["line"], result.quarantine["reason"])) == {
        4: "empty_text",
        5: "label_not_in_set",
        6: "unknown_language",
    }
    with pytest.raises(DataError) as info:
        check_quarantine_limit(result.rows_in, result.quarantine, DataConfig(), str(path))
    message = str(info.value)
    assert "3 of 6 rows quarantined (50.0% > limit 5.0%)" in message
    assert f"reviews{suffix}:4 empty_text;text_too_short" in message
    assert f"reviews{suffix}:5 label_not_in_set" in message


# --- quarantine limit -----------------------------------------------------------------------


def quarantine_of(n: int, source: str = "/data/in/bad.csv") -> pd.DataFrame:
    return pd.DataFrame(
        {"source": [source] * n, "line": list(range(2, n + 2)), "reasons": ["label_not_in_set"] * n}
    )


@pytest.mark.parametrize(
    "rows_in, n_bad, limit, fails",
    [
        (20, 0, 0.05, False),
        (20, 1, 0.05, False),  # exactly at the limit passes
        (20, 2, 0.05, True),
        (100, 6, 0.05, True),
        (10, 0, 0.0, False),
        (10, 1, 0.0, True),
        (10, 10, 1.0, False),
        (3, 1, 0.5, False),
        (3, 2, 0.5, True),
    ],
)
def test_quarantine_limit(rows_in, n_bad, limit, fails):
    cfg = DataConfig(max_quarantine_fraction=limit)
    if not fails:
        check_quarantine_limit(rows_in, quarantine_of(n_bad), cfg, "src")
        return
    with pytest.raises(DataError) as info:
        check_quarantine_limit(rows_in, quarantine_of(n_bad), cfg, "my/source")
    message = str(info.value)
    assert message.startswith("my/source: ")
    assert f"{n_bad} of {rows_in} rows quarantined" in message
    assert "bad.csv:2 label_not_in_set" in message
    assert "/data/in/" not in message  # base names only: one short line
    assert "\n" not in message


def test_quarantine_limit_lists_only_the_first_rows():
    with pytest.raises(DataError) as info:
        check_quarantine_limit(10, quarantine_of(8), DataConfig(), "src", show=3)
    message = str(info.value)
    assert "bad.csv:4 " in message
    assert "bad.csv:5 " not in message


def test_quarantine_limit_with_no_rows():
    with pytest.raises(DataError, match="src: no rows"):
        check_quarantine_limit(0, quarantine_of(0), DataConfig(), "src")


def test_validation_runs_in_a_process_without_a_main_file():
    """`python -c` (and every pytest-xdist worker) has a __main__ without a file: with pyspark
    installed, importing GX used to end such a process with exit 0 before validating anything."""
    import subprocess
    import sys

    probe = ("import pandas as pd; from sentibridge.config import DataConfig; "
             "from sentibridge.data.validation import validate_rows; "
             "rows = pd.DataFrame({'id': ['a'], 'text': ['a fine text'], 'label': [1], 'language': ['en'], 'split': ['train']}); "
             "print('valid', validate_rows(rows, DataConfig()).rows_valid)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("valid 1"), (done.stdout, done.stderr[-2000:])
