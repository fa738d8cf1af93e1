"""Splitting: duplicates out, given splits kept, leaks found, the rest stratified with a fixed seed."""

from __future__ import annotations

import pandas as pd
import pytest

from sentibridge.config import DataConfig, SplitConfig
from sentibridge.data.ingest import read_dataset
from sentibridge.data.split import SPLITS, normalise_text, split_rows
from sentibridge.errors import DataError
from tests.conftest import SAMPLE


def table(*rows: tuple) -> pd.DataFrame:
    """Rows as ``(id, text, label, language, split)``, shaped like the ingested table."""
    return pd.DataFrame(
        [
            {
                "id": i,
                "text": text,
                "label": label,
                "label_raw": str(label),
                "language": lang,
                "language_raw": lang,
                "split": split,
                "source": "mem.csv",
                "line": n,
            }
            for n, (i, text, label, lang, split) in enumerate(rows, start=2)
        ]
    )


def grid(sizes: dict[tuple[str, int], int], split: str | None = None) -> pd.DataFrame:
    """``sizes[(language, label)]`` unsplit rows with distinct texts."""
    return table(
        *(
            (f"{lang}-{label}-{i:03d}", f"{lang} review {i} with label {label}", label, lang, split)
            for (lang, label), n in sizes.items()
            for i in range(n)
        )
    )


def ids(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["id"])


def assignment(result) -> dict[str, str]:
    return {i: name for name in SPLITS for i in getattr(result, name)["id"]}


def group_counts(result) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(language, label) -> (train, val, test) row counts."""
    out: dict[tuple[str, int], list[int]] = {}
    for k, name in enumerate(SPLITS):
        for key, n in getattr(result, name).groupby(["language", "label"]).size().items():
            out.setdefault(key, [0, 0, 0])[k] = int(n)
    return {key: tuple(v) for key, v in out.items()}


def assert_accounting(rows_valid: int, result) -> None:
    s = result.summary()
    assert rows_valid == s["rows_out"] + s["duplicates_removed"] + s["leaks_removed"] + s["subsampled_out"]


def keys_in(frame: pd.DataFrame) -> set[str]:
    return set(frame["text"].map(normalise_text))


BALANCED = grid({(lang, label): 20 for lang in ("en", "fr", "de") for label in (0, 1, 2)})


# --- normalised text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        ("Great product", "great product"),
        ("Great   product\n", " great\tproduct"),
        ("Straße gut", "STRASSE gut"),  # casefold, not lower
        ("ｈｅｌｌｏ world", "hello world"),  # NFKC folds full-width forms
        ("see https://a.example/x?q=1 now", "see http://b.example now"),
        ("see www.example.com now", "see HTTPS://other.example/path now"),
        ("@bob loved it", "@alice loved it"),
        ("@user loved it", "@Someone_42 loved it"),
        ("a\u00a0b", "a b"),
    ],
)
def test_normalised_duplicates_share_a_key(a, b):
    assert normalise_text(a) == normalise_text(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("good product", "good products"),
        ("good product!", "good product"),
        ("not bad", "bad"),
        ("café", "cafe"),  # accents are meaning, not noise
    ],
)
def test_different_texts_keep_different_keys(a, b):
    assert normalise_text(a) != normalise_text(b)


def test_normalise_text_output():
    assert normalise_text("  Hi @Bob,  see https://x.y/z  NOW ") == "hi @user, see http now"


# --- assignment -----------------------------------------------------------------------------


def test_same_seed_same_split_other_seed_other_split():
    first = split_rows(BALANCED, SplitConfig(seed=7))
    again = split_rows(BALANCED, SplitConfig(seed=7))
    other = split_rows(BALANCED, SplitConfig(seed=8))
    assert assignment(first) == assignment(again)
    assert assignment(first) != assignment(other)
    # the seed moves rows around, not the proportions
    assert group_counts(first) == group_counts(other)


def test_assignment_does_not_depend_on_input_order():
    shuffled = BALANCED.sample(frac=1.0, random_state=123)
    assert assignment(split_rows(shuffled, SplitConfig())) == assignment(split_rows(BALANCED, SplitConfig()))


def test_stratified_by_language_and_label():
    rows = grid({("en", 0): 20, ("en", 1): 10, ("fr", 2): 7, ("fr", 0): 1})
    result = split_rows(rows, SplitConfig(val_fraction=0.1, test_fraction=0.2))
    # (train, val, test): round(n * 0.2) to test, round(n * 0.1) to val, the rest to train
    assert group_counts(result) == {
        ("en", 0): (14, 2, 4),
        ("en", 1): (7, 1, 2),
        ("fr", 2): (5, 1, 1),
        ("fr", 0): (1, 0, 0),
    }


def test_stratification_follows_the_configured_fractions():
    result = split_rows(BALANCED, SplitConfig(val_fraction=0.25, test_fraction=0.25))
    assert set(group_counts(result).values()) == {(10, 5, 5)}
    no_val = split_rows(BALANCED, SplitConfig(val_fraction=0.0, test_fraction=0.5))
    assert set(group_counts(no_val).values()) == {(10, 0, 10)}


def test_given_splits_are_respected_and_only_unsplit_rows_assigned():
    given = table(
        ("g-tr", "given train text", 0, "en", "train"),
        ("g-va", "given val text", 0, "en", "val"),
        ("g-te1", "given test text one", 0, "en", "test"),
        ("g-te2", "given test text two", 0, "en", "test"),
        ("g-te3", "given test text three", 0, "en", "test"),
    )
    rows = pd.concat([given, grid({("en", 0): 10})], ignore_index=True)
    result = split_rows(rows, SplitConfig())
    where = assignment(result)
    assert (where["g-tr"], where["g-va"]) == ("train", "val")
    assert {where[i] for i in ("g-te1", "g-te2", "g-te3")} == {"test"}
    # the 10 unsplit rows: 2 test, 1 val, 7 train (given rows do not count towards the fractions)
    assert group_counts(result)[("en", 0)] == (1 + 7, 1 + 1, 3 + 2)
    assert result.summary()["languages_in"] == {"en": {"test": 3, "train": 1, "unassigned": 10, "val": 1}}


def test_all_given_splits_stay_put():
    rows = grid({("en", 1): 6}, split="test")
    result = split_rows(rows, SplitConfig())
    assert (len(result.train), len(result.val), len(result.test)) == (0, 0, 6)


# --- duplicates -----------------------------------------------------------------------------


def test_exact_and_normalised_duplicates_are_counted_separately():
    rows = table(
        ("t1", "Great product", 2, "en", "train"),
        ("t2", "Great product", 2, "en", "train"),  # exact
        ("t3", "great   PRODUCT", 2, "en", "train"),  # normalised
        ("t4", "Loved it https://a.example/x @bob", 2, "en", "train"),
        ("t5", "loved it http://b.example/y @alice", 2, "en", "train"),  # normalised (URL, @user, case)
        ("v1", "Same thing", 1, "en", "val"),
        ("v2", "Same thing", 1, "en", "val"),  # exact within val
        ("u1", "Great product", 2, "en", None),  # exact repeat of a given row
        ("u2", "GREAT product", 2, "en", None),  # normalised repeat of a given row
        ("u3", "Unique text", 0, "en", None),
        ("u4", "Unique text", 0, "en", None),  # exact, both unsplit
        ("u5", "Ｕｎｉｑｕｅ　text", 0, "en", None),  # normalised (NFKC), unsplit
    )
    result = split_rows(rows, SplitConfig())
    assert result.duplicates_exact == 4  # t2, v2, u1, u4
    assert result.duplicates_normalised == 4  # t3, t5, u2, u5
    assert result.duplicates_removed == 8
    kept = set(assignment(result))
    assert kept == {"t1", "t4", "v1", "u3"}  # the first of each group stays
    assert len(result.leaks) == 0  # a repeat removed as duplicate is not also a leak
    assert_accounting(len(rows), result)


def test_same_text_in_two_languages_is_a_duplicate():
    rows = table(("a", "OK", 1, "en", None), ("b", "ok", 1, "de", None))
    result = split_rows(rows, SplitConfig())
    assert result.duplicates_normalised == 1
    assert ids(pd.concat([result.train, result.val, result.test])) == ["a"]


# --- leaks ----------------------------------------------------------------------------------

LEAKY = table(
    ("tr1", "Nice phone @bob", 2, "en", "train"),
    ("te1", "nice phone @ann", 2, "en", "test"),  # train -> test, normalised
    ("v1", "Loved it", 2, "en", "val"),
    ("te2", "Loved it", 2, "en", "test"),  # val -> test, exact
    ("tr2", "Meh", 1, "de", "train"),
    ("v2", "meh", 1, "de", "val"),  # train -> val, normalised
    ("tr3", "Triple", 0, "en", "train"),
    ("v3", "Triple", 0, "en", "val"),
    ("te3", "Triple", 0, "en", "test"),  # train -> test and val -> test, exact
    ("tr4", "clean train", 0, "en", "train"),
    ("v4", "clean val", 0, "en", "val"),
    ("te4", "clean test", 0, "en", "test"),
)


def test_leaks_are_found_and_removed_from_the_lower_split():
    result = split_rows(LEAKY, SplitConfig())
    leaks = result.leaks.set_index("id")
    assert sorted(leaks.index) == ["tr1", "tr2", "tr3", "v1", "v3"]
    assert leaks["leaks_into"].to_dict() == {"tr1": "test", "v1": "test", "tr2": "val", "tr3": "test", "v3": "test"}
    assert leaks["exact"].to_dict() == {"tr1": False, "v1": True, "tr2": False, "tr3": True, "v3": True}
    assert ids(result.train) == ["tr4"]
    assert ids(result.val) == ["v2", "v4"]
    assert ids(result.test) == ["te1", "te2", "te3", "te4"]  # test is never touched
    s = result.summary()
    assert (s["leaks_found"], s["leaks_exact"], s["leaks_removed"]) == (5, 3, 5)
    assert s["leaks_by_language"] == {"de": 1, "en": 4}
    assert s["duplicates_removed"] == 0
    assert_accounting(len(LEAKY), result)
    # what is left is unique across splits, also after normalisation
    train, val, test = keys_in(result.train), keys_in(result.val), keys_in(result.test)
    assert not (train & val or train & test or val & test)


def test_leaks_are_kept_but_counted_when_removal_is_off():
    result = split_rows(LEAKY, SplitConfig(remove_leaks_from_train=False))
    assert ids(result.train) == ["tr1", "tr2", "tr3", "tr4"]
    assert ids(result.val) == ["v1", "v2", "v3", "v4"]
    assert len(result.test) == 4
    s = result.summary()
    assert (s["leaks_found"], s["leaks_removed"]) == (5, 0)
    assert_accounting(len(LEAKY), result)


def test_no_leaks_between_assigned_rows():
    result = split_rows(BALANCED, SplitConfig())
    assert len(result.leaks) == 0
    assert result.summary()["leaks_by_language"] == {}


# --- subsampling ----------------------------------------------------------------------------


def test_train_subsample_per_language_keeps_labels_balanced():
    rows = grid({**{("en", label): 30 for label in (0, 1, 2)}, **{("fr", label): 4 for label in (0, 1, 2)}})
    full = split_rows(rows, SplitConfig())
    capped = split_rows(rows, SplitConfig(), DataConfig(max_rows_per_language=15))
    again = split_rows(rows, SplitConfig(), DataConfig(max_rows_per_language=15))
    # en: 21 train rows per label -> 5 each; fr: 3 per label, already under the cap
    assert capped.train.groupby("language").size().to_dict() == {"en": 15, "fr": 9}
    assert set(capped.train[capped.train["language"] == "en"].groupby("label").size()) == {5}
    assert capped.subsampled_out == len(full.train) - len(capped.train) == 63 - 15
    assert set(capped.train["id"]) <= set(full.train["id"])
    assert ids(capped.val) == ids(full.val) and ids(capped.test) == ids(full.test)  # only train shrinks
    assert ids(capped.train) == ids(again.train)  # deterministic
    assert_accounting(len(rows), capped)


def test_per_language_caps_replace_the_global_cap_for_the_languages_they_name():
    rows = grid({**{(lang, label): 30 for lang in ("en", "fr", "hi") for label in (0, 1, 2)}})
    full = split_rows(rows, SplitConfig())
    capped = split_rows(rows, SplitConfig(), DataConfig(max_rows_per_language=15, max_rows_by_language={"Hindi": 0, "fr": 6}))
    # 21 train rows per language and label; en keeps the global cap, fr its own, hi none
    assert capped.train.groupby("language").size().to_dict() == {"en": 15, "fr": 6}
    assert set(capped.train[capped.train["language"] == "fr"].groupby("label").size()) == {2}
    assert ids(capped.val) == ids(full.val) and ids(capped.test) == ids(full.test)  # hi is still scored
    assert capped.subsampled_out == len(full.train) - 21
    assert_accounting(len(rows), capped)
    alone = split_rows(rows, SplitConfig(), DataConfig(max_rows_by_language={"hi": 3}))  # no global cap
    assert alone.train.groupby("language").size().to_dict() == {"en": 63, "fr": 63, "hi": 3}
    exempt = split_rows(rows, SplitConfig(), DataConfig(max_rows_per_language=15, max_rows_by_language={"hi": None}))
    assert exempt.train.groupby("language").size().to_dict() == {"en": 15, "fr": 15, "hi": 63}


def test_a_per_language_cap_for_a_language_the_data_lacks_is_one_data_error():
    with pytest.raises(DataError, match="data.max_rows_by_language names hi, not a language of the data"):
        split_rows(BALANCED, SplitConfig(), DataConfig(max_rows_by_language={"hi": 10}))


@pytest.mark.parametrize(("caps", "message"), [({"klingon": 3}, "'klingon' is not a language"), ({"hi": -1}, "must be 0 or more")])
def test_bad_per_language_caps_fail_validation(caps, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(max_rows_by_language=caps)


def test_subsample_none_keeps_all_train_rows():
    result = split_rows(BALANCED, SplitConfig(), DataConfig(max_rows_per_language=None))
    assert result.subsampled_out == 0
    assert len(result.train) == 9 * 14


# --- accounting -----------------------------------------------------------------------------


@pytest.mark.parametrize("remove_leaks", [True, False])
@pytest.mark.parametrize("max_rows", [None, 10])
def test_accounting_with_duplicates_leaks_and_subsampling(remove_leaks, max_rows):
    extra = table(
        ("d1", "en review 0 with label 0", 0, "en", None),  # exact duplicate of a grid row
        ("d2", "EN review 1   with label 0", 0, "en", None),  # normalised duplicate
        ("l1", "leaked text", 1, "en", "train"),
        ("l2", "Leaked text", 1, "en", "test"),
    )
    rows = pd.concat([BALANCED, extra], ignore_index=True)
    result = split_rows(rows, SplitConfig(remove_leaks_from_train=remove_leaks), DataConfig(max_rows_per_language=max_rows))
    s = result.summary()
    assert (s["duplicates_exact"], s["duplicates_normalised"], s["leaks_found"]) == (1, 1, 1)
    assert s["leaks_removed"] == (1 if remove_leaks else 0)
    assert (s["subsampled_out"] > 0) == (max_rows is not None)
    assert s["rows_out"] == len(result.train) + len(result.val) + len(result.test)
    assert_accounting(len(rows), result)
    per_language = s["languages"]
    assert sum(sum(v.values()) for v in per_language.values()) == s["rows_out"]


# --- real data ------------------------------------------------------------------------------


def test_sample_data_end_to_end_conserves_rows():
    from sentibridge.data.validation import validate_rows

    rows = read_dataset(SAMPLE)
    checked = validate_rows(rows, DataConfig())
    assert checked.rows_in == 648
    assert checked.rows_quarantined == 0
    result = split_rows(checked.valid, SplitConfig())
    s = result.summary()
    assert_accounting(checked.rows_valid, result)
    assert s["rows_out"] == 648  # the sample has no duplicates or leaks
    languages = ["ar", "de", "en", "es", "fr", "hi", "pt", "ru", "zh"]
    assert s["languages_in"] == {lang: {"unassigned": 72} for lang in languages}
    assert s["languages"] == {lang: {"train": 51, "val": 6, "test": 15} for lang in languages}
    assert set(group_counts(result).values()) == {(17, 2, 5)}
    train, val, test = keys_in(result.train), keys_in(result.val), keys_in(result.test)
    assert not (train & val or train & test or val & test)


def test_umsab_french_test_tweets_that_leak_into_train(umsab, tmp_path):
    # UMSAB's README: French has 2 test tweets that also appear in train.
    root = tmp_path / "umsab"
    root.mkdir()
    (root / "french").symlink_to(umsab / "french", target_is_directory=True)
    rows = read_dataset(root)
    result = split_rows(rows, SplitConfig())
    leaks = result.leaks
    exact_train_to_test = leaks[(leaks["split"] == "train") & (leaks["leaks_into"] == "test") & leaks["exact"]]
    assert len(exact_train_to_test) == 2
    assert not set(exact_train_to_test["id"]) & set(result.train["id"])
    assert not keys_in(result.train) & keys_in(result.test)
    assert_accounting(len(rows), result)
