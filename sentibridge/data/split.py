"""Train/val/test split: duplicates out, given splits respected, leakage checked, the rest stratified.

Order matters: duplicates are removed before unsplit rows are assigned, so one text cannot
land in two splits by chance; then leaks between given splits are found (test beats val beats
train), and only then is train subsampled.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sentibridge.config import DataConfig, SplitConfig
from sentibridge.errors import DataError

SPLITS = ("train", "val", "test")
_PRIORITY = {"test": 0, "val": 1, "train": 2, None: 3}

_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_USER = re.compile(r"@\w+")
_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Key for duplicate detection: NFKC, case-folded, URLs and @mentions masked, whitespace folded."""
    text = unicodedata.normalize("NFKC", text)
    text = _URL.sub("http", text)
    text = _USER.sub("@user", text)
    return _SPACE.sub(" ", text).strip().casefold()


@dataclass
class SplitResult:
    """The three splits and what was removed on the way."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    duplicates_exact: int = 0
    duplicates_normalised: int = 0
    leaks: pd.DataFrame = field(default_factory=pd.DataFrame)
    leaks_removed: int = 0
    subsampled_out: int = 0
    languages_in: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def duplicates_removed(self) -> int:
        return self.duplicates_exact + self.duplicates_normalised

    def language_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            for lang, n in getattr(self, name)["language"].value_counts().items():
                counts.setdefault(str(lang), dict.fromkeys(SPLITS, 0))[name] = int(n)
        return dict(sorted(counts.items()))

    def summary(self) -> dict:
        return {
            "duplicates_removed": self.duplicates_removed,
            "duplicates_exact": self.duplicates_exact,
            "duplicates_normalised": self.duplicates_normalised,
            "leaks_found": int(len(self.leaks)),
            "leaks_exact": int(self.leaks["exact"].sum()) if len(self.leaks) else 0,
            "leaks_by_language": {str(k): int(v) for k, v in self.leaks["language"].value_counts().sort_index().items()}
            if len(self.leaks)
            else {},
            "leaks_removed": self.leaks_removed,
            "subsampled_out": self.subsampled_out,
            "languages_in": self.languages_in,
            "languages": self.language_counts(),
            "rows_out": sum(len(getattr(self, name)) for name in SPLITS),
        }


def _dedupe(rows: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """Drop repeats inside one split, and unsplit rows that repeat a row with a split.

    Repeats across two *given* splits are leaks, handled by ``_find_leaks``.
    """
    rows = rows.assign(_prio=rows["split"].map(_PRIORITY)).sort_values(["_prio"], kind="stable")
    exact_dupe = rows.duplicated(subset=["split", "text"], keep="first") & rows["split"].notna()
    key_dupe = rows.duplicated(subset=["split", "_key"], keep="first") & rows["split"].notna()
    unsplit = rows["split"].isna()
    unsplit_exact = unsplit & rows.duplicated(subset=["text"], keep="first")
    unsplit_key = unsplit & rows.duplicated(subset=["_key"], keep="first")
    exact = exact_dupe | unsplit_exact
    normalised = (key_dupe | unsplit_key) & ~exact
    kept = rows[~(exact | normalised)].sort_index().drop(columns="_prio")
    return kept, int(exact.sum()), int(normalised.sum())


def _assign(rows: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """Stratify unsplit rows by language x label with a fixed seed."""
    rows = rows.copy()
    unsplit = rows[rows["split"].isna()]
    rng = np.random.default_rng(cfg.seed)
    for _, group in unsplit.sort_values("id").groupby(["language", "label"], sort=True):
        order = group.index.to_numpy()[rng.permutation(len(group))]
        n_test = int(round(len(order) * cfg.test_fraction))
        n_val = int(round(len(order) * cfg.val_fraction))
        rows.loc[order[:n_test], "split"] = "test"
        rows.loc[order[n_test : n_test + n_val], "split"] = "val"
        rows.loc[order[n_test + n_val :], "split"] = "train"
    return rows


def _find_leaks(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose normalised text also stands in a higher-priority split (test > val > train)."""
    best = rows.groupby("_key")["split"].agg(lambda s: min(s, key=_PRIORITY.__getitem__))
    leaked = rows[rows["split"] != rows["_key"].map(best)]
    into = leaked["_key"].map(best)
    texts = {name: set(group["text"]) for name, group in rows.groupby("split")}
    exact = [text in texts[target] for text, target in zip(leaked["text"], into)]
    return leaked.assign(leaks_into=into, exact=exact)


def subsample_per_language(
    train: pd.DataFrame, max_rows: int | None, seed: int, by_language: Mapping[str, int | None] | None = None
) -> pd.DataFrame:
    """Keep at most ``max_rows`` rows per language, spread evenly over labels (seeded).

    ``by_language`` caps the languages it names instead (0 keeps none of their rows, None all).
    """
    if max_rows is None and not by_language:
        return train
    kept = []
    for language, group in train.groupby("language", sort=True):
        cap = (by_language or {}).get(str(language), max_rows)
        if cap is None or len(group) <= cap:
            kept.append(group)
            continue
        if cap == 0:
            continue
        frac = cap / len(group)
        picked = group.groupby("label", group_keys=False).sample(frac=frac, random_state=seed)
        kept.append(picked.head(cap))
    return pd.concat(kept).sort_index() if kept else train.iloc[:0]


def split_rows(rows: pd.DataFrame, split_cfg: SplitConfig, data_cfg: DataConfig | None = None) -> SplitResult:
    """Deduplicate, assign, check leakage and subsample; returns the three splits."""
    languages_in = _counts_in(rows)
    rows = rows.reset_index(drop=True).assign(_key=rows["text"].map(normalise_text).to_numpy())
    rows, exact, normalised = _dedupe(rows)
    rows = _assign(rows, split_cfg)
    leaks = _find_leaks(rows)
    removed = 0
    if split_cfg.remove_leaks_from_train:
        drop = leaks.index
        removed = len(drop)
        rows = rows.drop(index=drop)
    parts = {name: rows[rows["split"] == name].drop(columns="_key").reset_index(drop=True) for name in SPLITS}
    max_rows = data_cfg.max_rows_per_language if data_cfg else None
    by_language = data_cfg.max_rows_by_language if data_cfg else {}
    missing = sorted(set(by_language) - set(rows["language"]))
    if missing:  # most likely a typo for a language that is there
        raise DataError(f"data.max_rows_by_language names {', '.join(missing)}, not a language of the data")
    train = subsample_per_language(parts["train"], max_rows, split_cfg.seed, by_language).reset_index(drop=True)
    return SplitResult(
        train=train,
        val=parts["val"],
        test=parts["test"],
        duplicates_exact=exact,
        duplicates_normalised=normalised,
        leaks=leaks.drop(columns="_key").reset_index(drop=True),
        leaks_removed=removed,
        subsampled_out=len(parts["train"]) - len(train),
        languages_in=languages_in,
    )


def _counts_in(rows: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows per language and given split, before anything is removed (None: to be assigned)."""
    table = rows.assign(split=rows["split"].fillna("unassigned")).groupby(["language", "split"]).size()
    counts: dict[str, dict[str, int]] = {}
    for (lang, name), n in table.items():
        counts.setdefault(str(lang), {})[str(name)] = int(n)
    return dict(sorted(counts.items()))
