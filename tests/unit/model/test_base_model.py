"""Base-model helpers that need no weights: the embedded tokenizer's sanity check."""

from __future__ import annotations

import pytest

from sentibridge.model.base import check_embedded_tokenizer
from sentibridge.errors import SentibridgeError


class _CharLevel:
    """What transformers 5.17 made of the embedded GGUF tokenizer: one token per character."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}


def test_real_gemma_tokenizer_passes(gemma_tokenizer):
    check_embedded_tokenizer(gemma_tokenizer)


def test_character_level_conversion_is_refused():
    with pytest.raises(SentibridgeError, match="character by character"):
        check_embedded_tokenizer(_CharLevel())
