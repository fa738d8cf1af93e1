"""Adaptive retrieval augmentation and self-alignment for low-resource languages.

Each language's count of labelled train rows sets its resource level (relative to the largest
language). Low- and medium-resource languages get a budget of extra rows, proportional to
their deficit against the median language and capped by a ratio of their own rows:

* ``retrieved``: labelled rows of high-resource languages that are nearest (cosine, FAISS) to the
  language's own rows, at most ``per_query_cap`` per anchor row and each pool row at most once;
* ``self_labelled`` (optional): rows of an unlabelled in-language pool, labelled by a model and
  kept only where the model's label agrees with the majority label of the nearest labelled rows
  and the model is confident enough for that resource level.

Every row of the result carries ``origin`` (``original``, ``retrieved``, ``self_labelled``),
``anchor_id`` (the row it was found through), ``similarity`` and ``augmented_for`` (the language
it was added for). Only train rows are ever read: val and test text reaches this module only as
the hashes in ``holdout_keys``, used to drop pool rows that repeat it.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sentibridge.config import AugmentConfig, SelfAlignmentConfig
from sentibridge.labels import LABELS
from sentibridge.augment.embedding import Embed
from sentibridge.augment.retrieval import VectorIndex, build_index
from sentibridge.data.split import normalise_text
from sentibridge.tables import markdown_table

ORIGINS = ("original", "retrieved", "self_labelled")

#: Pool rows in, (N, 3) label probabilities out.
Labeler = Callable[[pd.DataFrame], np.ndarray]


def _keys(texts: Iterable[str]) -> list[str]:
    return [hashlib.sha256(normalise_text(t).encode()).hexdigest() for t in texts]


def holdout_keys(*frames: pd.DataFrame) -> list[str]:
    """sha256 of each normalised text of ``frames`` (val, test): what augmentation may know of them."""
    return sorted({key for frame in frames for key in _keys(frame["text"])})


def resource_levels(counts: Mapping[str, int], cfg: AugmentConfig) -> dict[str, str]:
    """``low``/``medium``/``high`` per language, by its share of the largest language's rows."""
    top = max(counts.values(), default=0)
    levels = {}
    for lang, n in counts.items():
        if n >= cfg.high_resource_fraction * top:
            levels[lang] = "high"
        elif n < cfg.low_resource_fraction * top:
            levels[lang] = "low"
        else:
            levels[lang] = "medium"
    return levels


def budgets(counts: Mapping[str, int], levels: Mapping[str, str], cfg: AugmentConfig) -> dict[str, int]:
    """Rows to add per language: ``budget_fraction`` x deficit against the median language,
    capped at ``max_added_ratio`` x the language's own rows; none for high-resource languages."""
    median = statistics.median(counts.values()) if counts else 0
    out = {}
    for lang, n in counts.items():
        if levels[lang] == "high":
            out[lang] = 0
            continue
        deficit = max(0.0, median - n)
        out[lang] = int(min(round(cfg.budget_fraction * deficit), math.floor(cfg.max_added_ratio * n)))
    return out


def pick_neighbours(
    sims: np.ndarray, positions: np.ndarray, budget: int, per_query_cap: int, min_similarity: float, taken: set[int]
) -> list[tuple[int, int, float]]:
    """Choose up to ``budget`` (anchor, pool position, similarity) triples from a kNN result.

    Rank by rank across anchors (every anchor's best neighbour before any anchor's second), so the
    additions spread over the language's rows; ``taken`` pool rows are never picked twice.
    """
    chosen: list[tuple[int, int, float]] = []
    per_anchor = [0] * len(sims)
    for rank in range(sims.shape[1] if sims.ndim == 2 else 0):
        order = np.argsort(-sims[:, rank], kind="stable")
        for anchor in order:
            if len(chosen) >= budget:
                return chosen
            pos, sim = int(positions[anchor, rank]), float(sims[anchor, rank])
            if pos < 0 or sim < min_similarity or pos in taken or per_anchor[anchor] >= per_query_cap:
                continue
            taken.add(pos)
            per_anchor[anchor] += 1
            chosen.append((int(anchor), pos, sim))
    return chosen


def knn_vote(neighbour_labels: np.ndarray, neighbour_sims: np.ndarray, n_labels: int = len(LABELS)) -> np.ndarray:
    """Similarity-weighted majority label of each row's neighbours (-1 for rows without any)."""
    votes = np.zeros((len(neighbour_labels), n_labels))
    for j in range(n_labels):
        votes[:, j] = np.where(neighbour_labels == j, np.clip(neighbour_sims, 0, None) + 1e-6, 0).sum(axis=1)
    out = votes.argmax(axis=1)
    out[votes.sum(axis=1) == 0] = -1
    return out


def self_alignment_mask(
    preds: np.ndarray, confidence: np.ndarray, votes: np.ndarray, levels: list[str], cfg: SelfAlignmentConfig
) -> np.ndarray:
    """Rows to keep: model label == kNN vote, confidence at the level's threshold, and a
    low- or medium-resource language (high-resource ones have enough labelled rows)."""
    threshold = {"low": cfg.min_confidence_low, "medium": cfg.min_confidence_medium, "high": math.inf}
    needed = np.array([threshold[level] for level in levels], dtype=float)
    return (preds == votes) & (confidence >= needed)


@dataclass
class AugmentResult:
    """Augmented train rows, the index over the original train rows, and the per-language report."""

    rows: pd.DataFrame
    index: VectorIndex
    report: pd.DataFrame


def _as_original(train: pd.DataFrame) -> pd.DataFrame:
    """The train rows with the provenance columns that added rows carry."""
    return train.assign(origin="original", anchor_id=None, similarity=np.nan, augmented_for=None)


def augment_train(
    train: pd.DataFrame,
    embed: Embed,
    cfg: AugmentConfig,
    holdout: Iterable[str] = (),
    pool: pd.DataFrame | None = None,
    labeler: Labeler | None = None,
    seed: int = 0,
    embedder: str | None = None,
) -> AugmentResult:
    """Augment ``train`` (rows with id, text, label, language) for its low-resource languages.

    ``embed`` is called with train texts and, for self-alignment, pool texts, nothing else.
    ``pool`` (text, language) is used only when ``cfg.self_alignment.enabled``; pool rows that
    repeat a train text or a ``holdout`` key are dropped before anything looks at them.
    ``embedder`` (the name behind ``embed``) is recorded in the index's metadata.
    """
    train = train.reset_index(drop=True)
    counts = train.groupby("language").size().astype(int).to_dict()
    levels = resource_levels(counts, cfg)
    budget = budgets(counts, levels, cfg) if cfg.enabled else dict.fromkeys(counts, 0)
    embedded = cfg.enabled and len(train) > 0
    vectors = embed(train["text"].tolist()) if embedded else np.zeros((0, 1), np.float32)
    index = build_index(
        vectors, train["id"].astype(str).tolist() if embedded else [], cfg.exact_index_max_rows, cfg.approximate_index, seed,
        metadata={"embedder": embedder} if embedder else {},
    )
    added = [_retrieve(train, vectors, levels, budget, cfg, seed)] if cfg.enabled else []
    if cfg.enabled and cfg.self_alignment.enabled and pool is not None and labeler is not None:
        added.append(_self_label(train, index, levels, counts, pool, embed, labeler, cfg.self_alignment, holdout, seed))
    rows = pd.concat([_as_original(train), *added], ignore_index=True)
    return AugmentResult(rows=rows, index=index, report=augmentation_report(rows, levels, budget))


def _retrieve(
    train: pd.DataFrame, vectors: np.ndarray, levels: Mapping[str, str], budget: Mapping[str, int], cfg: AugmentConfig, seed: int
) -> pd.DataFrame:
    """Neighbours from the high-resource languages for each language with a budget."""
    high = np.flatnonzero(train["language"].map(levels).eq("high").to_numpy())
    wanted = {lang: b for lang, b in budget.items() if b > 0}
    if not len(high) or not wanted:
        return train.iloc[0:0].assign(origin="retrieved")
    pool_index = build_index(vectors[high], [str(i) for i in high], cfg.exact_index_max_rows, cfg.approximate_index, seed)
    taken: set[int] = set()
    parts = []
    for lang in sorted(wanted):
        anchors = np.flatnonzero(train["language"].eq(lang).to_numpy())
        # Ask for spare candidates: some are taken by other anchors or languages.
        sims, positions = pool_index.search(vectors[anchors], cfg.per_query_cap * 4)
        picks = pick_neighbours(sims, positions, wanted[lang], cfg.per_query_cap, cfg.min_similarity, taken)
        if not picks:
            continue
        rows = train.iloc[[int(high[p]) for _, p, _ in picks]].copy()
        rows["anchor_id"] = [str(train["id"].iat[int(anchors[a])]) for a, _, _ in picks]
        rows["similarity"] = [s for _, _, s in picks]
        rows["augmented_for"] = lang
        rows["id"] = rows["id"].astype(str) + "~retrieved~" + lang
        parts.append(rows)
    out = pd.concat(parts, ignore_index=True) if parts else train.iloc[0:0].copy()
    return out.assign(origin="retrieved")


def _self_label(
    train: pd.DataFrame,
    index: VectorIndex,
    levels: Mapping[str, str],
    counts: Mapping[str, int],
    pool: pd.DataFrame,
    embed: Embed,
    labeler: Labeler,
    cfg: SelfAlignmentConfig,
    holdout: Iterable[str],
    seed: int,
) -> pd.DataFrame:
    """Pool rows of low/medium languages whose model label agrees with the kNN vote."""
    banned = set(holdout) | set(_keys(train["text"]))
    pool = pool[pool["language"].map(levels).isin(["low", "medium"])]
    pool = pool[[k not in banned for k in _keys(pool["text"])]]
    pool = pool.drop_duplicates("text")
    pool = pd.concat(
        [g.sample(n=min(len(g), cfg.max_pool_rows_per_language), random_state=seed) for _, g in pool.groupby("language")]
        or [pool],
        ignore_index=True,
    )
    if not len(pool):
        return train.iloc[0:0].assign(origin="self_labelled")
    probs = np.asarray(labeler(pool))
    preds, confidence = probs.argmax(axis=1), probs.max(axis=1)
    sims, positions = index.search(embed(pool["text"].tolist()), cfg.knn_k)
    labels = train["label"].to_numpy()
    votes = knn_vote(np.where(positions >= 0, labels[np.clip(positions, 0, None)], -1), sims)
    keep = self_alignment_mask(preds, confidence, votes, pool["language"].map(levels).tolist(), cfg)
    kept = pool.assign(label=preds, confidence=confidence, similarity=sims[:, 0] if sims.shape[1] else np.nan)
    kept["anchor_id"] = [str(train["id"].iat[int(p)]) if p >= 0 else None for p in positions[:, 0]] if sims.shape[1] else None
    kept = kept[keep]
    # Most confident first, up to the cap per language.
    kept = kept.sort_values("confidence", ascending=False, kind="stable")
    kept = pd.concat(
        [g.head(math.floor(cfg.max_added_ratio * counts[lang])) for lang, g in kept.groupby("language")] or [kept],
        ignore_index=True,
    )
    kept["id"] = [f"pool~{lang}~{i}" for i, lang in enumerate(kept["language"])]
    kept["augmented_for"] = kept["language"]
    kept["split"] = "train"
    return kept.drop(columns=["confidence"]).assign(origin="self_labelled")


def augmentation_report(rows: pd.DataFrame, levels: Mapping[str, str], budget: Mapping[str, int]) -> pd.DataFrame:
    """Per language: level, budget, original rows, rows added by origin, mean similarity."""
    records = []
    for lang in sorted(levels):
        for_lang = rows[rows["augmented_for"].eq(lang) & rows["origin"].ne("original")]
        original = int((rows["language"].eq(lang) & rows["origin"].eq("original")).sum())
        retrieved = for_lang[for_lang["origin"].eq("retrieved")]
        records.append(
            {
                "language": lang,
                "level": levels[lang],
                "original": original,
                "budget": int(budget.get(lang, 0)),
                "retrieved": len(retrieved),
                "self_labelled": int(for_lang["origin"].eq("self_labelled").sum()),
                "mean_similarity": float(retrieved["similarity"].mean()) if len(retrieved) else None,
                "retrieved_from": ",".join(sorted(retrieved["language"].unique())) if len(retrieved) else "",
            }
        )
    return pd.DataFrame.from_records(records)


def report_markdown(report: pd.DataFrame) -> str:
    """The augmentation report as a Markdown table (ZenML view, CLI)."""
    rows = [
        [
            r.language, r.level, r.original, r.budget, r.retrieved, r.self_labelled,
            None if r.mean_similarity is None or pd.isna(r.mean_similarity) else r.mean_similarity,
            r.retrieved_from,
        ]
        for r in report.itertuples(index=False)
    ]
    headers = ["language", "level", "original", "budget", "retrieved", "self-labelled", "mean similarity", "retrieved from"]
    return markdown_table(headers, rows)
