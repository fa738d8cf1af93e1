"""The FAISS index (exact and approximate, round trip through the ZenML materializer) and the
content-hash embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sentibridge.augment.embedding import EmbeddingCache, embed_texts
from sentibridge.augment.retrieval import VectorIndex, build_index


def _unit(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("exact_max_rows,approximate,kind", [(100, "hnsw", "flat-ip"), (10, "hnsw", "hnsw-ip"), (10, "ivf", "ivf-ip")])
def test_index_finds_each_vector_itself(exact_max_rows, approximate, kind):
    vectors = _unit(60)
    index = build_index(vectors, [f"r{i}" for i in range(60)], exact_max_rows, approximate)
    assert index.kind == kind and len(index) == 60 and index.dim == 8
    sims, positions = index.search(vectors[:5], 3)
    assert positions[:, 0].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-5)


def test_empty_index_searches_to_nothing():
    index = build_index(np.zeros((0, 4), np.float32), [], dim=4)
    sims, positions = index.search(_unit(2, 4), 5)
    assert sims.shape == (2, 0) and positions.shape == (2, 0)


def test_index_round_trips_through_the_materializer(tmp_path):
    from materializers.vector_index import VectorIndexMaterializer

    vectors = _unit(20)
    index = build_index(vectors, [f"r{i}" for i in range(20)], metadata={"embedder": "tiny"})
    uri = tmp_path / "artifact"
    uri.mkdir()
    materializer = VectorIndexMaterializer(str(uri))
    materializer.save(index)
    assert sorted(p.name for p in uri.iterdir()) == ["index.faiss", "index.json"]  # no pickle
    loaded = materializer.load(VectorIndex)
    assert loaded.ids == index.ids and loaded.kind == index.kind and loaded.metadata == {"embedder": "tiny"}
    np.testing.assert_array_equal(loaded.search(vectors, 4)[1], index.search(vectors, 4)[1])
    assert materializer.extract_metadata(loaded)["vectors"] == 20


class _CountingModel:
    """Stands in for a SentenceTransformer: counts the texts it encodes."""

    device = "cpu"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts, **_kwargs) -> np.ndarray:
        self.encoded.extend(texts)
        return np.stack([_unit(1, 4, seed=len(t))[0] for t in texts])


def test_cache_embeds_only_new_texts(tmp_path):
    model = _CountingModel()
    first = embed_texts(["a", "bb", "a"], "tiny", tmp_path, model=model, progress=False)
    assert sorted(model.encoded) == ["a", "bb"]  # a repeated text is embedded once
    again = embed_texts(["bb", "a", "ccc"], "tiny", tmp_path, model=model, progress=False)
    assert sorted(model.encoded) == ["a", "bb", "ccc"]  # only "ccc" was new
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[1], first[0])
    # Another embedder never reuses these vectors.
    embed_texts(["a"], "other", tmp_path, model=model, progress=False)
    assert model.encoded.count("a") == 2


class _Interrupted(Exception):
    pass


def test_an_embedding_cut_off_keeps_its_finished_chunks(tmp_path, monkeypatch):
    """A whole split embeds for many minutes: a rerun after Ctrl-C embeds only what was not stored."""
    import sentibridge.augment.embedding as embedding

    monkeypatch.setattr(embedding, "EMBED_CHUNK_ROWS", 4)
    texts = [f"text {i}" for i in range(10)]

    class _CutOff(_CountingModel):
        def encode(self, batch, **kwargs):
            if len(self.encoded) >= 8:
                raise _Interrupted
            return super().encode(batch, **kwargs)

    with pytest.raises(_Interrupted):
        embed_texts(texts, "tiny", tmp_path, batch_size=2, model=_CutOff(), progress=False)
    rerun = _CountingModel()
    vectors = embed_texts(texts, "tiny", tmp_path, batch_size=2, model=rerun, progress=False)
    assert len(rerun.encoded) == 2  # the two chunks of 4 finished before the cut are not embedded again
    np.testing.assert_array_equal(vectors, np.stack([_unit(1, 4, seed=len(t))[0] for t in texts]))


def test_cache_shards_are_plain_arrays(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.store(["k1", "k2"], _unit(2, 4))
    (shard,) = tmp_path.glob("*.npz")
    with np.load(shard, allow_pickle=False) as data:  # would raise on object arrays
        assert data["vectors"].dtype == np.float32
    assert set(cache.lookup(["k1", "zz"])) == {"k1"}


class _LoadSpy:
    """Wraps ``np.load`` and records which files were opened."""

    def __init__(self, monkeypatch) -> None:
        self.opened: list[str] = []
        real = np.load

        def load(file, *args, **kwargs):
            self.opened.append(Path(file).name)
            return real(file, *args, **kwargs)

        monkeypatch.setattr(np, "load", load)


def _filled_cache(tmp_path) -> tuple[EmbeddingCache, dict[str, str], np.ndarray]:
    """Three stores -> three shards; returns the cache, key -> shard name, and the vectors."""
    cache = EmbeddingCache(tmp_path)
    vectors = _unit(9, 4)
    shard_of: dict[str, str] = {}
    for batch in range(3):
        before = {p.name for p in tmp_path.glob("*.npz")}
        keys = [f"k{batch}{i}" for i in range(3)]
        cache.store(keys, vectors[3 * batch : 3 * batch + 3])
        (new,) = {p.name for p in tmp_path.glob("*.npz")} - before
        shard_of.update({key: new for key in keys})
    return cache, shard_of, vectors


def test_lookup_opens_only_the_shards_holding_the_keys(tmp_path, monkeypatch):
    cache, shard_of, vectors = _filled_cache(tmp_path)
    spy = _LoadSpy(monkeypatch)
    found = cache.lookup(["k11", "k12", "nope"])
    assert spy.opened == [shard_of["k11"]]
    np.testing.assert_array_equal(found["k12"], vectors[5])
    assert set(found) == {"k11", "k12"}
    spy.opened.clear()
    assert cache.lookup(["k02", "k20"]).keys() == {"k02", "k20"}
    assert sorted(spy.opened) == sorted({shard_of["k02"], shard_of["k20"]})
    spy.opened.clear()
    assert cache.lookup(["unknown"]) == {} and spy.opened == []


def test_lookup_works_with_an_unrelated_shard_gone_and_misses_the_deleted_keys(tmp_path):
    cache, shard_of, vectors = _filled_cache(tmp_path)
    (tmp_path / shard_of["k00"]).unlink()
    found = cache.lookup(["k00", "k21"])
    assert set(found) == {"k21"}
    np.testing.assert_array_equal(found["k21"], vectors[7])


def test_a_shard_the_index_has_not_seen_is_found(tmp_path):
    cache, _, _ = _filled_cache(tmp_path)
    # As a cache from before the index, or a process that died between shard and index, leaves it.
    np.savez(tmp_path / "legacy.npz", keys=np.array(["old"], dtype="S64"), vectors=_unit(1, 4, seed=9))
    np.testing.assert_array_equal(cache.lookup(["old"])["old"], _unit(1, 4, seed=9)[0])
    assert set(EmbeddingCache(tmp_path).lookup(["old", "k10"])) == {"old", "k10"}


def test_a_large_store_is_split_into_bounded_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(EmbeddingCache, "SHARD_ROWS", 4)
    cache = EmbeddingCache(tmp_path)
    vectors = _unit(10, 4)
    cache.store([f"k{i}" for i in range(10)], vectors)
    sizes = []
    for shard in tmp_path.glob("*.npz"):
        with np.load(shard, allow_pickle=False) as data:
            sizes.append(len(data["keys"]))
    assert sorted(sizes) == [2, 4, 4]
    found = cache.lookup([f"k{i}" for i in range(10)])
    np.testing.assert_array_equal(np.stack([found[f"k{i}"] for i in range(10)]), vectors)


def _store_rounds(folder: str, rounds: int, start, vectors: np.ndarray) -> None:
    """Store the same keys as the other process, round after round, both released together."""
    cache = EmbeddingCache(Path(folder))
    for round_ in range(rounds):
        start.wait()
        cache.store([f"r{round_}k{i}" for i in range(len(vectors))], vectors)


def test_two_processes_storing_the_same_texts_at_once_leave_every_vector_readable(tmp_path):
    """Homes sharing one cache (SENTIBRIDGE_EMBEDDING_CACHE) embed the same data at the same time."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    rounds, vectors = 20, _unit(4000, 16)  # shards big enough that the two writes overlap
    start = context.Barrier(2, timeout=30)  # a crashed partner breaks it instead of hanging the other
    workers = [context.Process(target=_store_rounds, args=(str(tmp_path), rounds, start, vectors)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        if worker.is_alive():
            worker.kill()
    assert [worker.exitcode for worker in workers] == [0, 0]
    keys = [f"r{round_}k{i}" for round_ in range(rounds) for i in range(len(vectors))]
    found = EmbeddingCache(tmp_path).lookup(keys)
    np.testing.assert_array_equal(np.stack([found[key] for key in keys]), np.concatenate([vectors] * rounds))
    assert not list(tmp_path.glob(".*.npz"))  # no half-written shard left behind


def test_the_environment_points_every_home_at_one_cache(tmp_path, monkeypatch):
    from sentibridge.home import resolve_home

    monkeypatch.setenv("SENTIBRIDGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SENTIBRIDGE_EMBEDDING_CACHE", raising=False)
    assert resolve_home().embeddings == tmp_path / "home" / "embeddings"
    monkeypatch.setenv("SENTIBRIDGE_EMBEDDING_CACHE", str(tmp_path / "shared"))
    assert resolve_home().embeddings == tmp_path / "shared"
