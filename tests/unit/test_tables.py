"""Tables: numbers right-aligned and formatted, text kept as written, None empty; the data report."""

from __future__ import annotations

import pandas as pd

from sentibridge.data.report import data_report_markdown, data_report_text
from sentibridge.tables import markdown_table, text_table


def _cells(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()]


def test_text_table_aligns_numbers_right_and_text_left():
    lines = text_table(["language", "rows", "f1"], [["en", 120, 0.81234], ["ar", 7, None]]).splitlines()
    assert lines[0].split() == ["language", "rows", "f1"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["en", "120", "0.812"]
    assert lines[3].split() == ["ar", "7"]  # None is an empty cell
    assert lines[2].index("120") + 3 == lines[3].index("7") + 1  # right-aligned: same end column
    assert lines[2].startswith("en ") and lines[3].startswith("ar ")


def test_text_stays_text_even_when_it_looks_like_a_number():
    """A data version such as ``12e3...`` is not a float, and ``007`` keeps its zeros."""
    out = text_table(["version", "data"], [["007", "12e34567"], ["8", "ab"]])
    assert "12e34567" in out and "007" in out


def test_per_column_float_formats_and_empty_tables():
    out = text_table(["x", "delta"], [["a", 1.25], ["b", -2.0]], floatfmt=["", "+.1f"])
    assert "+1.2" in out and "-2.0" in out
    assert text_table(["a", "b"], []).splitlines()[0].split() == ["a", "b"]


def test_markdown_table_is_a_pipe_table_with_numbers_right_aligned():
    cells = _cells(markdown_table(["language", "support", "f1"], [["en", 3, 2 / 3], ["ar", 10, None]]))
    assert cells[0] == ["language", "support", "f1"]
    assert cells[1][1].endswith(":") and cells[1][2].endswith(":") and not cells[1][0].endswith(":")
    assert cells[2:] == [["en", "3", "0.667"], ["ar", "10", ""]]


REPORT = {
    "data_path": "data/sample",
    "data_version": "ae78.dir",
    "data_version_source": "dvc",
    "rows_in": 12,
    "rows_valid": 10,
    "rows_quarantined": 2,
    "languages": {"en": {"train": 6, "val": 1, "test": 1}, "ar": {"train": 2}},
    "languages_in": {"en": {"train": 8}, "ar": {"unassigned": 2}},
    "quarantine_reasons": {"empty_text": 2},
    "duplicates_removed": 1,
    "duplicates_exact": 1,
    "duplicates_normalised": 0,
    "leaks_found": 0,
    "leaks_exact": 0,
    "leaks_removed": 0,
}


def test_data_report_text_has_the_language_table():
    text = data_report_text(REPORT)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith(("en ", "ar "))}
    assert rows == {"en": ["8", "6", "1", "1"], "ar": ["2", "2", "0", "0"]}
    assert "quarantined: empty_text 2" in text


def test_data_report_markdown_escapes_pipes_in_quarantined_text():
    quarantine = pd.DataFrame([{"source": "a.csv", "line": 3, "reasons": "empty_text", "text": "a | b"}])
    lines = data_report_markdown(REPORT, quarantine).split("## Quarantined rows")[1].strip().splitlines()
    assert _cells(lines[0])[0] == ["source", "line", "reasons", "text"]
    assert lines[2].split() == ["|", "a.csv", "|", "3", "|", "empty_text", "|", "a", "\\|", "b", "|"]
