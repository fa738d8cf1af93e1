"""A FAISS index over normalised sentence vectors, with the row ids it holds.

Small pools get exact inner-product search (``IndexFlatIP``); above ``exact_max_rows`` an
approximate index (HNSW, or IVF trained on the pool) keeps search fast. Vectors are unit
length, so every score is a cosine similarity. Saved with ``faiss.write_index`` plus a JSON
sidecar: no pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

INDEX_FILE = "index.faiss"
META_FILE = "index.json"


@dataclass
class VectorIndex:
    """A FAISS index and the id of the row behind each of its vectors (same order)."""

    index: Any
    ids: list[str]
    kind: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, positions), each (Q, k'); k' = min(k, len). Missing hits are -1."""
        k = min(k, len(self))
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        sims, positions = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return sims, positions

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        meta = {"ids": self.ids, "kind": self.kind, "metadata": self.metadata}
        (folder / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "VectorIndex":
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        return cls(faiss.read_index(str(folder / INDEX_FILE)), meta["ids"], meta["kind"], meta["metadata"])


def build_index(
    vectors: np.ndarray,
    ids: list[str],
    exact_max_rows: int = 50_000,
    approximate: Literal["hnsw", "ivf"] = "hnsw",
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    dim: int | None = None,
) -> VectorIndex:
    """Index ``vectors`` (N, dim), unit length, under ``ids``.

    ``dim`` is needed only for an empty index (no vectors to read it from).
    """
    if len(vectors) != len(ids):
        raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    d = int(vectors.shape[1]) if len(vectors) else int(dim or 1)
    if len(vectors) <= exact_max_rows:
        index, kind = faiss.IndexFlatIP(d), "flat-ip"
    elif approximate == "hnsw":
        index, kind = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT), "hnsw-ip"
        index.hnsw.efSearch = 128
    else:
        nlist = max(1, int(np.sqrt(len(vectors))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(vectors)
        index.nprobe = max(1, nlist // 8)
        kind = "ivf-ip"
    if len(vectors):
        index.add(vectors)
    return VectorIndex(index, list(ids), kind, dict(metadata or {}))
