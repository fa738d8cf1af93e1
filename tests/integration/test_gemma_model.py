"""The real embedded Gemma-3-270M: conversion cache, scoring and one LoRA step (opt-in, slow)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from sentibridge.model.base import is_converted, load_causal_lm, load_tokenizer, resolve_base_model
from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.model.instructions import SERVING_TEMPLATE, build_records, label_token_ids
from sentibridge.model.precision import base_dtype, resolve_precision
from sentibridge.inference.scoring import score_records
from sentibridge.model.training import TrainJob, train_lora
from tests.conftest import converted_model_dir

pytestmark = pytest.mark.integration

ROWS = pd.DataFrame(
    {
        "id": ["a", "b", "c", "d"],
        "text": ["I love it, wonderful!", "Awful, it broke at once.", "Es fantástico.", "C'est horrible."],
        "label": [2, 0, 2, 0],
        "language": ["en", "en", "es", "fr"],
    }
)


@pytest.fixture(scope="module")
def model_dir() -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return resolve_base_model(ModelConfig(), converted_model_dir())


def test_conversion_is_cached_and_reused(model_dir):
    assert is_converted(Path(model_dir))
    weights = sorted(Path(model_dir).glob("*.safetensors"))
    assert weights, "the conversion writes safetensors"
    stamps = [w.stat().st_mtime_ns for w in weights]
    assert resolve_base_model(ModelConfig(), converted_model_dir()) == model_dir
    assert [w.stat().st_mtime_ns for w in weights] == stamps  # reused, not converted again


def test_scoring_and_one_training_step(model_dir, tmp_path):
    cfg = ModelConfig()
    tokenizer = load_tokenizer(model_dir, cfg)
    assert all(len(t) == 1 for t in label_token_ids(tokenizer))
    precision = resolve_precision("auto", "cpu")
    model = load_causal_lm(model_dir, cfg, "cpu", base_dtype(precision))
    records = build_records(ROWS, tokenizer, cfg.max_length, seed=0, template=SERVING_TEMPLATE)
    result = score_records(model, tokenizer, records, batch_size=4, device="cpu", precision=precision, progress=False)
    assert result.probs.shape == (4, 3)
    job = TrainJob(model_dir, cfg, LoraConfig(), TrainConfig(max_steps=1, batch_size=4, eval_rows=4), records, records, tmp_path, "cpu")
    train = train_lora(model, tokenizer, job, progress=False)
    assert train.steps == 1 and train.eval_loss is not None and (train.adapter_dir / "adapter_config.json").is_file()
