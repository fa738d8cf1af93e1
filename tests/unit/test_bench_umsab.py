"""The pure helpers of bench/umsab.py: the published-table parser and the TF-IDF baseline."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def umsab(import_bench):
    return import_bench("umsab")


# Made-up numbers in the layout of a leaderboard README; not UMSAB's text.
README = """# Some dataset

Intro text | with a pipe that is not a table.

| language | model A | model B |
|:---------|-----:|------|
| english  | 50.0 | 70.5 |
| German   | 60.0 | n/a  |
| pt-BR    | 40.0 | 80.0 |
| average  | 50.0 | 75.3 |

| other | table |
|---|---|
| x | 1 |
"""


def test_parse_published_maps_languages_and_scales(umsab):
    table = umsab.parse_published(README)
    assert set(table) == {"model A", "model B"}
    assert table["model A"] == pytest.approx({"en": 0.5, "de": 0.6, "pt": 0.4, "average": 0.5})
    assert table["model B"] == pytest.approx({"en": 0.705, "pt": 0.8, "average": 0.753})  # "n/a" skipped


def test_parse_published_without_table(umsab):
    assert umsab.parse_published("no table here\n") == {}


def _frame(rows_per_label: int, start: int = 0) -> pd.DataFrame:
    words = {
        "en": ("awful terrible bad", "the meeting is on tuesday", "great wonderful love"),
        "de": ("schrecklich schlecht mies", "das treffen ist am dienstag", "toll wunderbar super"),
    }
    rows = []
    for language, texts in words.items():
        for label, text in enumerate(texts):
            for i in range(start, start + rows_per_label):
                rows.append({"id": f"{language}-{label}-{i}", "text": f"{text} {i}", "label": label, "language": language})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("per_language", [True, False])
def test_tfidf_baseline_learns_a_separable_toy_task(umsab, per_language):
    train, test = _frame(6), _frame(2, start=100)
    result = umsab.tfidf_baseline(train, test, per_language=per_language, c_grid=(1.0, 10.0), seed=0)
    assert result["f1"] == pytest.approx({"de": 1.0, "en": 1.0})
    assert set(result["C"]) == ({"de", "en"} if per_language else {"all"})
    assert all(c in (1.0, 10.0) for c in result["C"].values())


def test_tfidf_baseline_is_deterministic_and_fixed_c_skips_cv(umsab):
    train, test = _frame(3), _frame(2, start=50)
    first = umsab.tfidf_baseline(train, test, c_grid=(2.0,), seed=0)
    assert first == umsab.tfidf_baseline(train, test, c_grid=(2.0,), seed=0)
    assert first["C"] == {"de": 2.0, "en": 2.0}


def test_tfidf_baseline_needs_training_rows_per_test_language(umsab):
    train, test = _frame(3), _frame(1)
    test.loc[0, "language"] = "fr"
    with pytest.raises(ValueError, match="'fr'"):
        umsab.tfidf_baseline(train, test, per_language=True)
