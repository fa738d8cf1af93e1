"""Integration fixtures: the tiny Gemma-3 base model, built once per machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, TINY_BASE

#: What the tiny base is built from; a machine holding another build rebuilds it.
TINY_BASE_BUILD = {"seed": 0, "tokenizer": "gemma-3 cut to the sample and the prompts"}


def tokenizer_corpus() -> list[str]:
    """Texts whose tokens the tiny base's tokenizer keeps: the sample and every prompt around it."""
    import pandas as pd

    from sentibridge.model.instructions import LABEL_WORDS, TEMPLATES, render_instruction

    texts = pd.read_json(SAMPLE / "reviews.jsonl", lines=True)
    languages = [*sorted(set(texts["language"])), None]
    prompts = [f"<start_of_turn>user\n{render_instruction(t, lang)}\n\nExamples:\n\nText: <end_of_turn>\n<start_of_turn>model\n"
               for t in range(len(TEMPLATES)) for lang in languages]
    answers = [f"Text: {text}\nAnswer: {word}" for text in texts["text"][:30] for word in LABEL_WORDS]
    return [*prompts, *texts["text"], *answers, *LABEL_WORDS]


@pytest.fixture(scope="session", autouse=True)
def tiny_base(tiny_gemma_config, gemma_tokenizer) -> Path:
    """Build ``TINY_BASE`` once per machine (``TINY_MODEL`` points the CLI at it).

    Its tokenizer is Gemma-3's cut to the sample and the prompts (``tests/tiny_tokenizer.py``):
    17k tokens instead of 262k, so each CLI process loads it in a fraction of a second.
    """
    import copy
    import shutil
    import tempfile

    import torch
    from filelock import FileLock
    from transformers import AutoTokenizer, Gemma3ForCausalLM

    from tests.tiny_tokenizer import prune

    marker = TINY_BASE / "tests_tiny_base.json"
    TINY_BASE.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(TINY_BASE) + ".lock"):  # pytest-xdist workers build it once between them
        if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == TINY_BASE_BUILD:
            return TINY_BASE
        tmp = Path(tempfile.mkdtemp(dir=TINY_BASE.parent, prefix=".tiny-"))
        full = tmp / "full-tokenizer"
        gemma_tokenizer.save_pretrained(full)
        prune(full, tmp, tokenizer_corpus())
        shutil.rmtree(full)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        config = copy.deepcopy(tiny_gemma_config)
        config.vocab_size = len(tokenizer)
        config.pad_token_id, config.bos_token_id = tokenizer.pad_token_id, tokenizer.bos_token_id
        config.eos_token_id = tokenizer.eos_token_id
        torch.manual_seed(TINY_BASE_BUILD["seed"])
        Gemma3ForCausalLM(config).save_pretrained(tmp, safe_serialization=True)
        (tmp / marker.name).write_text(json.dumps(TINY_BASE_BUILD), encoding="utf-8")
        shutil.rmtree(TINY_BASE, ignore_errors=True)
        tmp.rename(TINY_BASE)
    return TINY_BASE
