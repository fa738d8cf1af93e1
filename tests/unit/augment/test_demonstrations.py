"""Retrieval demonstrations: selection order, exclusions, the store on disk, and the prompt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sentibridge.config import DemonstrationsConfig
from sentibridge.augment.demonstrations import STORE_DIR, DemonstrationStore, build_store, demonstrations_for, load_for_model
from sentibridge.model.instructions import answer_budget, build_records, export_llamafactory, format_prompt
from sentibridge.inference.predict import predict_rows


def _embed(texts: list[str]) -> np.ndarray:
    """A deterministic toy embedder: the text's first number is its angle on the unit circle."""
    angles = [float(t.split()[0]) for t in texts]
    return np.array([[np.cos(a), np.sin(a)] for a in angles], dtype=np.float32)


def _rows() -> pd.DataFrame:
    # English rows at angles 0.0..0.4, German at 0.05 and 0.15, one Hindi row far away.
    data = [
        ("e0", "0.0 en zero", "en", 0), ("e1", "0.1 en one", "en", 1), ("e2", "0.2 en two", "en", 2),
        ("e3", "0.3 en three", "en", 0), ("e4", "0.4 en four", "en", 1),
        ("d0", "0.05 de null", "de", 2), ("d1", "0.15 de eins", "de", 0),
        ("h0", "3.0 hi ek", "hi", 1),
    ]
    return pd.DataFrame(data, columns=["id", "text", "language", "label"])


def _store(k: int = 2, cross_lingual: bool = True, rows: pd.DataFrame | None = None) -> DemonstrationStore:
    cfg = DemonstrationsConfig(k=k, cross_lingual=cross_lingual)
    return build_store(_rows() if rows is None else rows, _embed, "toy", cfg)


def _select(store: DemonstrationStore, texts: list[str], languages: list[str | None]) -> list[list[str]]:
    frame = pd.DataFrame({"text": texts, "language": languages})
    return [[d["text"] for d in demos] for demos in demonstrations_for(frame, store, _embed)]


def test_same_language_first_nearest_first():
    assert _select(_store(k=2), ["0.12 en query"], ["en"]) == [["0.1 en one", "0.2 en two"]]
    assert _select(_store(k=2), ["0.12 de frage"], ["de"]) == [["0.15 de eins", "0.05 de null"]]


def test_cross_lingual_fallback_fills_up_after_own_language():
    demos = _select(_store(k=3), ["2.9 hi query"], ["hi"])[0]
    assert demos[0] == "3.0 hi ek"  # the one Hindi row comes first although English is nearer...
    assert len(demos) == 3 and all(" hi " not in d for d in demos[1:])  # ...then other languages
    assert _select(_store(k=3, cross_lingual=False), ["2.9 hi query"], ["hi"]) == [["3.0 hi ek"]]


def test_unknown_or_missing_language_searches_every_row():
    assert _select(_store(k=2), ["0.06 ?", "0.06 ?"], ["xx", None]) == [["0.05 de null", "0.1 en one"]] * 2
    assert _select(_store(k=2, cross_lingual=False), ["0.06 ?"], ["xx"]) == [[]]


def test_never_the_row_itself_or_an_identical_text():
    # Training queries are rows of the store: the same (normalised) text is passed over.
    assert _select(_store(k=2), ["0.0  EN Zero"], ["en"]) == [["0.1 en one", "0.2 en two"]]


def test_only_original_rows_become_demonstrations_and_k0_is_off():
    rows = _rows().assign(origin="original")
    copies = rows.head(2).assign(id=["x0", "x1"], language="hi", origin="retrieved")
    store = _store(k=2, rows=pd.concat([rows, copies], ignore_index=True))
    assert len(store) == len(rows)
    off = _store(k=0)
    assert len(off) == 0 and demonstrations_for(_rows(), off, _embed) is None


def test_store_round_trip_without_pickle(tmp_path):
    store = _store(k=2)
    store.save(tmp_path / STORE_DIR)
    np.load(tmp_path / STORE_DIR / "vectors.npy", allow_pickle=False)  # a plain array
    loaded, embed = load_for_model(tmp_path)
    assert loaded is not None and embed is not None
    assert loaded.k == 2 and loaded.embedder == "toy"
    pd.testing.assert_frame_equal(loaded.rows, store.rows, check_dtype=False)
    assert _select(loaded, ["0.12 en query"], ["en"]) == _select(store, ["0.12 en query"], ["en"])
    assert load_for_model(tmp_path / "nothing") == (None, None)


def test_long_examples_are_cut():
    rows = _rows().assign(text=lambda f: f["text"] + " " + "x" * 500)
    store = build_store(rows, _embed, "toy", DemonstrationsConfig(k=1, max_chars=30))
    demo = store.select(_embed(["0.12 q"]), ["en"], ["0.12 q"])[0][0]
    assert len(demo["text"]) <= 31 and demo["text"].endswith("…")


def test_records_show_demonstrations_and_drop_them_before_cutting_the_input(gemma_tokenizer, tmp_path):
    rows = pd.DataFrame({"id": ["q"], "text": ["0.12 en query text"], "language": ["en"], "label": [2]})
    demos = demonstrations_for(rows, _store(k=2), _embed)
    record = build_records(rows, gemma_tokenizer, 256, seed=0, template=0, demonstrations=demos)[0]
    prompt = format_prompt(gemma_tokenizer, record)
    assert prompt.index("Examples:") < prompt.index("0.1 en one\nAnswer: neutral") < prompt.index("Text: 0.12 en query")
    # A budget that fits the input but not both examples: the farthest example goes first.
    one = format_prompt(gemma_tokenizer, {**record, "demonstrations": record["demonstrations"][:1]})
    budget = len(gemma_tokenizer(one, add_special_tokens=False)["input_ids"]) + answer_budget(gemma_tokenizer)
    tight = build_records(rows, gemma_tokenizer, budget, seed=0, template=0, demonstrations=demos)[0]
    assert [d["text"] for d in tight["demonstrations"]] == ["0.1 en one"]
    assert tight["input"] == "0.12 en query text"
    info = export_llamafactory([record], tmp_path)
    assert "0.2 en two" in (tmp_path / "sentibridge_train.json").read_text() and info.is_file()


def test_predict_rows_uses_the_store(gemma_tokenizer, tiny_gemma, monkeypatch):
    seen: list[list[dict]] = []
    import sentibridge.inference.predict as predict

    real = predict.build_records

    def spy(*args, **kwargs):
        records = real(*args, **kwargs)
        seen.extend(r.get("demonstrations") for r in records)
        return records

    monkeypatch.setattr(predict, "build_records", spy)
    rows = pd.DataFrame({"id": ["a", "b"], "text": ["0.12 en q", "2.9 hi q"], "language": ["en", "hi"]})
    out = predict_rows(tiny_gemma(), gemma_tokenizer, rows, 256, 4, "cpu", "fp32", progress=False, store=_store(k=1), embed=_embed)
    assert len(out) == 2
    assert [[d["text"] for d in demos] for demos in seen] == [["0.1 en one"], ["3.0 hi ek"]]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_every_query_gets_k_examples_when_cross_lingual(k):
    texts = [f"{a:.2f} q" for a in np.linspace(0, 3, 7)]
    picked = _select(_store(k=k), texts, ["en", "de", "hi", "en", "xx", None, "de"])
    assert all(len(p) == k for p in picked)
