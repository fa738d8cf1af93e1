"""Integration fixtures: the tiny Gemma-3 base model, built once per machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_BASE


@pytest.fixture(scope="session", autouse=True)
def tiny_base(tiny_gemma_config, gemma_tokenizer) -> Path:
    """Build ``TINY_BASE`` once per machine (``TINY_MODEL`` points the CLI at it)."""
    import shutil
    import tempfile

    import torch
    from filelock import FileLock
    from transformers import Gemma3ForCausalLM

    marker = TINY_BASE / "tests_tiny_base.json"
    TINY_BASE.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(TINY_BASE) + ".lock"):  # pytest-xdist workers build it once between them
        if marker.is_file():
            return TINY_BASE
        tmp = Path(tempfile.mkdtemp(dir=TINY_BASE.parent, prefix=".tiny-"))
        torch.manual_seed(0)
        Gemma3ForCausalLM(tiny_gemma_config).save_pretrained(tmp, safe_serialization=True)
        gemma_tokenizer.save_pretrained(tmp)
        (tmp / marker.name).write_text('{"seed": 0}', encoding="utf-8")
        shutil.rmtree(TINY_BASE, ignore_errors=True)
        tmp.rename(TINY_BASE)
    return TINY_BASE
