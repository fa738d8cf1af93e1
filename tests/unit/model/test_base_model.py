"""Base-model helpers that need no weights: the embedded tokenizer's sanity check, load options."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from sentibridge.config import ModelConfig
from sentibridge.errors import SentibridgeError
from sentibridge.model import base
from sentibridge.model.base import check_embedded_tokenizer


class _CharLevel:
    """What transformers 5.17 made of the embedded GGUF tokenizer: one token per character."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}


def test_real_gemma_tokenizer_passes(gemma_tokenizer):
    check_embedded_tokenizer(gemma_tokenizer)


def test_character_level_conversion_is_refused():
    with pytest.raises(SentibridgeError, match="character by character"):
        check_embedded_tokenizer(_CharLevel())


def test_revision_pins_hub_ids_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokenizer and model get the same options: the revision for a hub id, none for a folder."""
    calls: list[tuple[str, dict]] = []

    def from_pretrained(path_or_id: str, **options):
        calls.append((path_or_id, options))
        return SimpleNamespace(pad_token=None, eos_token="<eos>", to=lambda device: None, eval=lambda: None)

    monkeypatch.setattr(base.AutoTokenizer, "from_pretrained", from_pretrained)
    monkeypatch.setattr(base.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    cfg = ModelConfig(base="org/model", revision="abc123", trust_remote_code=True)
    assert base.load_tokenizer("org/model", cfg).pad_token == "<eos>"
    base.load_causal_lm("org/model", cfg)
    base.load_tokenizer(str(tmp_path), cfg)
    base.load_causal_lm(str(tmp_path), cfg)
    hub = {"revision": "abc123", "trust_remote_code": True}
    local = {"revision": None, "trust_remote_code": True}
    assert [options for _, options in calls] == [hub, {**hub, "dtype": base.torch.float32}, local, {**local, "dtype": base.torch.float32}]


def test_a_tokenizer_is_loaded_once_per_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Steps of one run load the same tokenizer from the base folder and from the merged copy.
    loads = []

    def from_pretrained(path, **options):
        loads.append(path)
        return SimpleNamespace(pad_token="<pad>", eos_token="<eos>")

    monkeypatch.setattr(base.AutoTokenizer, "from_pretrained", from_pretrained)
    monkeypatch.setattr(base, "_TOKENIZERS", {})
    first, copy, changed = tmp_path / "base", tmp_path / "merged", tmp_path / "other"
    for folder, vocab in ((first, "a b"), (copy, "a b"), (changed, "a b c")):
        folder.mkdir()
        (folder / "tokenizer.json").write_text(vocab, encoding="utf-8")
    cfg = ModelConfig()
    assert base.load_tokenizer(str(first), cfg) is base.load_tokenizer(str(copy), cfg)
    assert base.load_tokenizer(str(changed), cfg) is not base.load_tokenizer(str(first), cfg)
    assert loads == [str(first), str(changed)]


def test_a_gguf_file_is_parsed_once_within_a_conversion(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_array("tokenizer.ggml.tokens", ["<pad>", "a", "b"])
    writer.add_tensor("w", np.zeros((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    def open_as_transformers_does(file: Path):
        from gguf import GGUFReader  # what load_gguf_checkpoint runs on each load

        return GGUFReader(file)

    with base.parsed_once():
        first = open_as_transformers_does(path)
        assert open_as_transformers_does(path) is first
        assert [t.name for t in first.tensors] == ["w"]
    # Outside the block a load parses the file again, as before.
    assert open_as_transformers_does(path) is not first
    assert gguf.GGUFReader.__name__ == "GGUFReader"
