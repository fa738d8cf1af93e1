"""Retrieval demonstrations: every prompt shows the k nearest labelled train examples.

Same language first; when a language has fewer than k examples, other languages fill up
(``cross_lingual``). Training, evaluation and serving pick demonstrations from one store (the
original labelled train rows, their vectors and the embedder's name). The store is saved inside
the merged model folder, so a served model builds its prompts exactly as training did.

A row is never its own demonstration, nor is any example with the same normalised text: that
would teach the model to copy the label of an identical text, which never helps at test time
(the split removes train texts that repeat in val or test).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from sentibridge.config import DemonstrationsConfig
from sentibridge.augment.embedding import Embed, embedder_function
from sentibridge.labels import LABELS
from sentibridge.data.split import normalise_text

#: The store's folder inside a merged model.
STORE_DIR = "demonstrations"
_ROWS = "rows.jsonl"
_VECTORS = "vectors.npy"
_META = "store.json"
_COLUMNS = ("id", "text", "language", "label")


@dataclass
class DemonstrationStore:
    """Labelled rows (``id, text, language, label``) and their unit vectors, in the same order."""

    rows: pd.DataFrame
    vectors: np.ndarray
    embedder: str
    k: int
    cross_lingual: bool = True
    max_chars: int = 200
    _indices: dict[str | None, tuple[Any, np.ndarray]] = field(default_factory=dict, repr=False)
    _normalised: list[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def save(self, folder: Path) -> Path:
        """Rows as JSONL, vectors as ``.npy`` and the settings as JSON: no pickle."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / _ROWS).open("w", encoding="utf-8") as handle:
            for row in self.rows[list(_COLUMNS)].itertuples(index=False):
                record = {"id": row.id, "text": row.text, "language": row.language, "label": int(row.label)}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        np.save(folder / _VECTORS, np.asarray(self.vectors, dtype=np.float32), allow_pickle=False)
        meta = {"embedder": self.embedder, "k": self.k, "cross_lingual": self.cross_lingual, "max_chars": self.max_chars}
        (folder / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> "DemonstrationStore":
        folder = Path(folder)
        meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        with (folder / _ROWS).open(encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        rows = pd.DataFrame(records, columns=list(_COLUMNS))
        vectors = np.load(folder / _VECTORS, allow_pickle=False)
        return cls(rows, vectors, meta["embedder"], int(meta["k"]), bool(meta["cross_lingual"]), int(meta["max_chars"]))

    def _index(self, language: str | None) -> tuple[Any, np.ndarray]:
        """Exact inner-product index over one language's rows (None: all rows), and their positions."""
        if language not in self._indices:
            every = np.arange(len(self.rows))
            positions = every if language is None else every[self.rows["language"].to_numpy() == language]
            index = faiss.IndexFlatIP(int(self.vectors.shape[1]))
            if len(positions):
                index.add(np.ascontiguousarray(self.vectors[positions], dtype=np.float32))
            self._indices[language] = (index, positions)
        return self._indices[language]

    def select(self, query_vectors: np.ndarray, languages: Sequence[str | None], texts: Sequence[str]) -> list[list[dict]]:
        """Per query, up to ``k`` examples ``{"text", "output", "language"}``, nearest first."""
        out: list[list[dict]] = [[] for _ in texts]
        if self.k == 0 or len(self) == 0:
            return out
        own = [normalise_text(t) for t in texts]
        if self._normalised is None:  # the store is queried once per split; normalise its rows once
            self._normalised = [normalise_text(t) for t in self.rows["text"]]
        norm = self._normalised
        row_languages = self.rows["language"].to_numpy()
        known = set(row_languages)
        by_language: dict[str | None, list[int]] = {}
        for q, language in enumerate(languages):
            by_language.setdefault(language if language in known else None, []).append(q)

        def fill(queries: list[int], language: str | None, skip: str | None) -> None:
            """Append the nearest rows of ``language`` (None: any), passing over rows of ``skip``."""
            index, positions = self._index(language)
            # Enough candidates to survive passing over the query's own text and the skipped language.
            wanted = self.k + 4 + (len(self._index(skip)[1]) if skip is not None else 0)
            matrix = np.ascontiguousarray(query_vectors[queries], dtype=np.float32)
            _, hits = index.search(matrix, min(len(positions), wanted))
            for q, row in zip(queries, hits):
                for hit in row:
                    if len(out[q]) >= self.k:
                        break
                    pos = int(positions[hit]) if hit >= 0 else -1
                    if pos < 0 or norm[pos] == own[q] or (skip is not None and row_languages[pos] == skip):
                        continue
                    out[q].append(self._example(pos))

        for language, queries in by_language.items():
            if language is not None:
                fill(queries, language, skip=None)
            short = [q for q in queries if len(out[q]) < self.k]
            if short and self.cross_lingual:
                fill(short, None, skip=language)
        return out

    def _example(self, pos: int) -> dict:
        row = self.rows.iloc[pos]
        text = str(row["text"])
        if len(text) > self.max_chars:
            text = text[: self.max_chars].rstrip() + "…"
        return {"text": text, "output": LABELS[int(row["label"])], "language": row["language"]}


def build_store(train_rows: pd.DataFrame, embed: Embed, embedder: str, cfg: DemonstrationsConfig) -> DemonstrationStore:
    """The store over the original labelled train rows (not retrieved copies, not pseudo-labels)."""
    rows = train_rows
    if "origin" in rows.columns:
        rows = rows[rows["origin"].eq("original")]
    if cfg.k == 0 or rows.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in _COLUMNS})
        return DemonstrationStore(empty, np.zeros((0, 1), np.float32), embedder, cfg.k, cfg.cross_lingual, cfg.max_chars)
    rows = rows[list(_COLUMNS)].astype({"id": str, "text": str}).reset_index(drop=True)
    rows = rows.assign(label=rows["label"].astype(int))
    vectors = np.asarray(embed(rows["text"].tolist()), dtype=np.float32)
    return DemonstrationStore(rows, vectors, embedder, cfg.k, cfg.cross_lingual, cfg.max_chars)


def load_for_model(folder: Path, precision: str = "auto") -> tuple[DemonstrationStore, Embed] | tuple[None, None]:
    """The store saved inside a merged model folder and its embedder, or (None, None).

    ``precision``: the run's ``embedding.precision``, so served prompts pick the same examples.
    """
    path = Path(folder) / STORE_DIR
    if not (path / _META).is_file():
        return None, None
    store = DemonstrationStore.load(path)
    return store, embedder_function(store.embedder, precision=precision, progress=False)


def demonstrations_for(rows: pd.DataFrame, store: DemonstrationStore | None, embed: Embed | None) -> list[list[dict]] | None:
    """Demonstrations for each row of ``rows`` (``text``, optional ``language``); None when off."""
    if store is None or store.k == 0 or len(store) == 0 or embed is None:
        return None
    texts = rows["text"].astype(str).tolist()
    raw = rows["language"].tolist() if "language" in rows.columns else [None] * len(texts)
    languages = [None if lang is None or pd.isna(lang) else str(lang) for lang in raw]
    return store.select(np.asarray(embed(texts), dtype=np.float32), languages, texts)
