"""Augmentation: resource levels, the budget rule, neighbour picking, self-alignment filters,
and that val/test text never reaches it."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from sentibridge.augment.augmentation import (
    augment_train,
    budgets,
    holdout_keys,
    knn_vote,
    pick_neighbours,
    resource_levels,
    self_alignment_mask,
    report_markdown,
)
from sentibridge.config import AugmentConfig, SelfAlignmentConfig


def _rows(counts: dict[str, int]) -> pd.DataFrame:
    rows = []
    for lang, n in counts.items():
        for i in range(n):
            rows.append({"id": f"{lang}-{i}", "text": f"{lang} text number {i}", "label": i % 3, "language": lang, "split": "train"})
    return pd.DataFrame(rows)


def _hash_embed(dim: int = 16):
    """Deterministic unit vectors per text; records every text it is asked to embed."""
    seen: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=dim) for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return embed, seen


def test_levels_are_relative_to_the_largest_language():
    cfg = AugmentConfig(high_resource_fraction=0.5, low_resource_fraction=0.2)
    levels = resource_levels({"en": 1000, "de": 500, "hi": 499, "ar": 199, "sw": 200}, cfg)
    assert levels == {"en": "high", "de": "high", "hi": "medium", "ar": "low", "sw": "medium"}


def test_budget_is_the_deficit_against_the_median_capped_by_a_ratio():
    cfg = AugmentConfig(budget_fraction=0.5, max_added_ratio=2.0)
    counts = {"en": 1000, "de": 800, "fr": 600, "hi": 100, "ar": 400}
    levels = resource_levels(counts, cfg)
    got = budgets(counts, levels, cfg)
    # median 600: hi deficit 500 -> 250, capped at 2 x 100 = 200; ar deficit 200 -> 100.
    assert got == {"en": 0, "de": 0, "fr": 0, "hi": 200, "ar": 100}
    assert budgets(counts, levels, AugmentConfig(budget_fraction=0.0))["hi"] == 0


def test_equal_languages_get_nothing():
    counts = {"en": 24, "de": 24, "hi": 24}
    cfg = AugmentConfig()
    assert set(budgets(counts, resource_levels(counts, cfg), cfg).values()) == {0}


def test_pick_neighbours_respects_budget_cap_threshold_and_uniqueness():
    sims = np.array([[0.9, 0.8, 0.7, 0.1], [0.95, 0.85, 0.3, 0.2]], dtype=np.float32)
    positions = np.array([[0, 1, 2, 3], [0, 4, 5, 6]])
    taken: set[int] = {5}
    picks = pick_neighbours(sims, positions, budget=10, per_query_cap=2, min_similarity=0.25, taken=taken)
    pos = [p for _, p, _ in picks]
    assert len(pos) == len(set(pos))  # a pool row is added once
    assert 5 not in pos and 3 not in pos and 6 not in pos  # taken, or below the threshold
    assert max(np.bincount([a for a, _, _ in picks])) <= 2  # per-anchor cap
    # Rank by rank: each anchor's best before anyone's second; row 0 goes to the closer anchor.
    assert picks[0] == (1, 0, pytest.approx(0.95))
    assert pick_neighbours(sims, positions, budget=1, per_query_cap=3, min_similarity=0.0, taken=set())[0][1] == 0
    assert len(pick_neighbours(sims, positions, budget=3, per_query_cap=3, min_similarity=0.0, taken=set())) == 3


def test_knn_vote_weights_by_similarity():
    labels = np.array([[0, 0, 2], [1, -1, -1], [-1, -1, -1]])
    sims = np.array([[0.1, 0.1, 0.9], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert knn_vote(labels, sims).tolist() == [2, 1, -1]


def test_self_alignment_keeps_only_agreeing_confident_rows_by_level():
    cfg = SelfAlignmentConfig(enabled=True, pool_path="x", min_confidence_low=0.5, min_confidence_medium=0.8)
    preds = np.array([0, 1, 2, 2, 1])
    conf = np.array([0.6, 0.6, 0.9, 0.6, 0.99])
    votes = np.array([0, 1, 2, 1, 1])
    levels = ["low", "medium", "medium", "low", "high"]
    assert self_alignment_mask(preds, conf, votes, levels, cfg).tolist() == [True, False, True, False, False]


def test_retrieval_adds_labelled_high_resource_neighbours_with_provenance():
    train = _rows({"en": 30, "de": 30, "hi": 6})
    embed, _ = _hash_embed()
    result = augment_train(train, embed, AugmentConfig(enabled=True, min_similarity=-1.0, per_query_cap=2), embedder="hash")
    added = result.rows[result.rows["origin"] == "retrieved"]
    assert len(added) == result.report.set_index("language").loc["hi", "budget"] == 12  # min(30-6, 2x6)
    assert set(added["language"]) <= {"en", "de"} and set(added["augmented_for"]) == {"hi"}
    assert added["anchor_id"].str.startswith("hi-").all() and added["similarity"].notna().all()
    assert added["id"].is_unique and not added["id"].isin(train["id"]).any()
    # Labels are the neighbours' own labels.
    originals = train.set_index("id")["label"]
    assert (added["id"].str.split("~").str[0].map(originals).to_numpy() == added["label"].to_numpy()).all()
    assert (result.rows["origin"] == "original").sum() == len(train)
    assert len(result.index) == len(train) and result.index.metadata == {"embedder": "hash"}


def test_disabled_augmentation_embeds_nothing():
    train = _rows({"en": 30, "hi": 3})
    embed, seen = _hash_embed()
    result = augment_train(train, embed, AugmentConfig(enabled=False))
    assert seen == [] and len(result.rows) == len(train)


def test_augmentation_never_reads_val_or_test():
    """The property: whatever val/test hold, augmentation sees only train and pool text, and a
    pool row repeating val/test text (or train text) is dropped before it is embedded or labelled."""
    train = _rows({"en": 30, "de": 30, "hi": 4})
    val = pd.DataFrame({"text": ["hi secret val text"], "language": ["hi"]})
    test = pd.DataFrame({"text": ["hi SECRET test   text", "another test row"], "language": ["hi", "hi"]})
    pool = pd.DataFrame(
        {
            "id": ["p0", "p1", "p2", "p3"],
            "text": ["HI secret val text", "hi secret test text", "hi text number 0", "a fresh hindi sentence"],
            "language": ["hi"] * 4,
        }
    )
    embed, seen = _hash_embed()
    labelled: list[str] = []

    def labeler(frame: pd.DataFrame) -> np.ndarray:
        labelled.extend(frame["text"])
        return np.tile([0.0, 0.0, 1.0], (len(frame), 1))

    cfg = AugmentConfig(enabled=True, self_alignment=SelfAlignmentConfig(enabled=True, pool_path="pool.jsonl", min_confidence_medium=0.0, min_confidence_low=0.0, knn_k=1))
    result = augment_train(train, embed, cfg, holdout_keys(val, test), pool, labeler)
    holdout_texts = set(val["text"]) | set(test["text"])
    assert not (set(seen) & holdout_texts) and not (set(labelled) & holdout_texts)
    assert labelled == ["a fresh hindi sentence"]  # val/test repeats (normalised) and a train repeat dropped
    assert not result.rows["text"].isin(holdout_texts).any()
    # The augment step takes the train split and hashes, never the val/test frames.
    from steps.augment import augment

    params = set(inspect.signature(augment.entrypoint).parameters)
    assert params == {
        "train_rows", "holdout_keys", "augment_cfg", "embedder", "embed_batch_size", "embed_precision", "model_cfg", "eval_cfg"
    }


def test_self_labelled_rows_are_capped_and_marked():
    train = _rows({"en": 30, "hi": 3})
    pool = pd.DataFrame({"id": [f"p{i}" for i in range(20)], "text": [f"pool sentence {i}" for i in range(20)], "language": ["hi"] * 20})
    embed, _ = _hash_embed()
    cfg = AugmentConfig(
        enabled=True,
        budget_fraction=0.0,
        self_alignment=SelfAlignmentConfig(enabled=True, pool_path="p", knn_k=1, min_confidence_low=0.0, max_added_ratio=1.0),
    )
    # The labeler agrees with the kNN vote by construction: it returns the nearest train row's label.
    result = augment_train(train, embed, cfg, pool=pool, labeler=lambda f: _nearest_label_probs(f, train, embed))
    added = result.rows[result.rows["origin"] == "self_labelled"]
    assert len(added) == 3  # capped at 1 x 3 original hi rows
    assert (added["language"] == "hi").all() and (added["augmented_for"] == "hi").all()
    assert added["anchor_id"].notna().all()
    assert result.report.set_index("language").loc["hi", "self_labelled"] == 3


def _nearest_label_probs(frame: pd.DataFrame, train: pd.DataFrame, embed) -> np.ndarray:
    sims = embed(frame["text"].tolist()) @ embed(train["text"].tolist()).T
    labels = train["label"].to_numpy()[sims.argmax(1)]
    return np.eye(3)[labels] * 0.9 + 0.1 / 3


def test_self_alignment_needs_a_pool_path():
    from sentibridge.config_loading import load_settings
    from sentibridge.errors import ConfigError

    with pytest.raises(ConfigError, match="pool_path"):
        load_settings(None, ["augment.self_alignment.enabled=true"])


def test_read_unlabelled_pool(tmp_path):
    from sentibridge.errors import DataError
    from sentibridge.data.ingest import read_unlabelled

    path = tmp_path / "pool.jsonl"
    pd.DataFrame({"text": ["एक वाक्य", "  ", "جملة"], "language": ["Hindi", "hi", "arabic"]}).to_json(
        path, orient="records", lines=True, force_ascii=False
    )
    pool = read_unlabelled(path)
    assert pool["language"].tolist() == ["hi", "ar"] and pool["id"].is_unique  # blank text dropped
    (tmp_path / "bad.csv").write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column"):
        read_unlabelled(tmp_path / "bad.csv")


def test_report_markdown_shows_each_language_and_blank_similarity():
    report = pd.DataFrame.from_records(
        [
            {"language": "am", "level": "low", "original": 5, "budget": 3, "retrieved": 2, "self_labelled": 1,
             "mean_similarity": 0.71234, "retrieved_from": "en,fr"},
            {"language": "en", "level": "high", "original": 90, "budget": 0, "retrieved": 0, "self_labelled": 0,
             "mean_similarity": None, "retrieved_from": ""},
        ]
    )
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in report_markdown(report).splitlines()]
    assert cells[0] == ["language", "level", "original", "budget", "retrieved", "self-labelled", "mean similarity", "retrieved from"]
    assert cells[2] == ["am", "low", "5", "3", "2", "1", "0.712", "en,fr"]
    assert cells[3] == ["en", "high", "90", "0", "0", "0", "", ""]
