"""Label and language normalisation: the spellings users send map to one canonical form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sentibridge.labels import INVALID_LABEL, LABELS, normalise_label
from sentibridge.languages import ISO_639_1, is_language_code, language_name, normalise_language

# --- labels ---------------------------------------------------------------------------------


def test_label_order_is_tweeteval_order():
    assert LABELS == ("negative", "neutral", "positive")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("negative", 0),
        ("neutral", 1),
        ("positive", 2),
        ("Positive", 2),
        ("  NEGATIVE \n", 0),
        ("neg", 0),
        ("Neu", 1),
        ("POS", 2),
        ("0", 0),
        ("1", 1),
        ("2", 2),
        (" 2 ", 2),
        ("2.0", 2),
        ("1.0", 1),
        (0, 0),
        (2, 2),
        (1.0, 1),
        (2.0, 2),
        (-0.0, 0),
        (np.int64(2), 2),
        (np.float32(1.0), 1),
        (np.float64(0.0), 0),
    ],
)
def test_known_label_spellings(value, expected):
    assert normalise_label(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,  # bool is an int subclass: True must not become "1" (neutral)
        False,
        3,
        -1,
        2.5,
        1.5,
        math.nan,
        math.inf,
        "",
        "   ",
        "3",
        "-1",
        "2.5",
        "posit",
        "very positive",
        "mixed",
        "nan",
        [2],
    ],
)
def test_unknown_labels_become_invalid(value):
    assert normalise_label(value) == INVALID_LABEL


def test_invalid_label_is_outside_the_label_range():
    assert INVALID_LABEL not in range(len(LABELS))


# --- languages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("en", "en"),
        ("EN", "en"),
        (" ar ", "ar"),
        ("pt-BR", "pt"),
        ("pt_br", "pt"),
        ("en_US", "en"),
        ("zh-Hant-TW", "zh"),
        ("arabic", "ar"),
        ("Arabic", "ar"),
        ("english", "en"),
        ("FRENCH", "fr"),
        ("german", "de"),
        ("hindi", "hi"),
        ("italian", "it"),
        ("portuguese", "pt"),
        ("spanish", "es"),
        ("Scottish Gaelic", "gd"),
        ("norwegian bokmal", "nb"),
        ("Luba-Katanga", "lu"),
        ("farsi", "fa"),
        ("Mandarin", "zh"),
        ("chinese_simplified", "zh"),
        ("Chinese Simplified", "zh"),
        ("brazilian", "pt"),
        ("portugese", "pt"),
        ("castilian", "es"),
        ("Filipino", "tl"),
        ("flemish", "nl"),
        ("moldovan", "ro"),
    ],
)
def test_known_language_spellings(value, expected):
    assert normalise_language(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, ""),
        ("", ""),
        ("  Klingon ", "klingon"),
        ("xx", "xx"),
        ("eng", "eng"),  # ISO 639-2 is not accepted: validation quarantines it
        ("nan", "nan"),
    ],
)
def test_unknown_languages_come_back_lowercased_and_stripped(value, expected):
    out = normalise_language(value)
    assert out == expected
    assert out not in ISO_639_1


def test_every_iso_code_and_name_round_trips():
    for code, name in ISO_639_1.items():
        assert normalise_language(code) == code
        assert normalise_language(code.upper()) == code
        assert normalise_language(name) == code, name


@pytest.mark.parametrize(
    "value, expected",
    [("norwegian_nynorsk", "nn"), ("norwegian_bokmal", "nb"), ("scottish_gaelic", "gd"), ("Western_Frisian", "fy")],
)
def test_underscored_language_names(value, expected):
    assert normalise_language(value) == expected


@pytest.mark.parametrize(
    "code, name",
    [("en", "English"), ("zh", "Chinese"), ("gd", "Scottish Gaelic"), ("nb", "Norwegian Bokmal"), ("xx", "xx")],
)
def test_language_name(code, name):
    assert language_name(code) == name


@pytest.mark.parametrize("missing", [None, float("nan"), "", "  "])
def test_language_name_of_no_code_is_none(missing):
    assert language_name(missing) is None


def test_language_name_normalises_case_and_space():
    assert language_name(" AR ") == "Arabic"


@pytest.mark.parametrize(
    "code, valid",
    [("en", True), ("kg", True), ("EN", False), (" en", False), ("pt-BR", False), ("eng", False), ("xx", False),
     ("Arabic", False), ("", False), (None, False), (float("nan"), False)],
)
def test_is_language_code_accepts_only_stored_iso_codes(code, valid):
    assert is_language_code(code) is valid


@pytest.mark.parametrize("written", ["pt-BR", "EN", "Arabic", "en_US", "farsi"])
def test_normalised_input_is_a_language_code(written):
    assert is_language_code(normalise_language(written))


def test_iso_table_entries_are_well_formed():
    assert len(ISO_639_1) >= 182
    assert all(len(code) == 2 and code.islower() for code in ISO_639_1)
    assert not any("_" in name for name in ISO_639_1.values())


def test_iso_table_is_the_full_standard_set():
    assert normalise_language("kg") == "kg"
    assert normalise_language("Kongo") == "kg"
    assert len(ISO_639_1) == 183
