"""Merging an adapter keeps the peft model's outputs; the pyfunc wrapper serves the merged folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model

from sentibridge.config import ModelConfig
from sentibridge.model.merge import CONFIG_FILE, merge_adapter, merge_peft_model


def _tiny(config):
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    return Gemma3ForCausalLM(config).eval()


@pytest.fixture(scope="module")
def trained_adapter(tiny_gemma_config, gemma_tokenizer, tmp_path_factory):
    """A base folder and a non-trivial adapter (random B, so the merge changes weights)."""
    root = tmp_path_factory.mktemp("merge")
    base_dir = root / "base"
    _tiny(tiny_gemma_config).save_pretrained(base_dir)
    gemma_tokenizer.save_pretrained(base_dir)
    torch.manual_seed(1)
    cfg = PeftLoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(_tiny(tiny_gemma_config), cfg)
    peft_model.save_pretrained(root / "adapter")
    return base_dir, root / "adapter", peft_model


@pytest.fixture(scope="module")
def merged_dir(trained_adapter, tmp_path_factory):
    base_dir, adapter_dir, _ = trained_adapter
    out = tmp_path_factory.mktemp("merged") / "model"
    return merge_adapter(str(base_dir), adapter_dir, out, ModelConfig(base=str(base_dir)), {"model": {"max_length": 64}})


def test_merged_outputs_equal_peft_outputs(tiny_gemma_config):
    torch.manual_seed(1)
    cfg = PeftLoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(_tiny(tiny_gemma_config), cfg)
    ids = torch.tensor([[2, 105, 4368, 107, 9259, 106]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        merged = merge_peft_model(peft_model)
        got = merged(input_ids=ids).logits
    assert not hasattr(merged, "peft_config")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_merge_adapter_writes_16bit_folder(trained_adapter, merged_dir):
    _, _, peft_model = trained_adapter
    out = merged_dir
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["model"]["max_length"] == 64 and config["merged_dtype"] == "bfloat16"
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.bfloat16}
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = torch.tensor([[2, 105, 4368, 107, 9259, 106]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        got = reloaded(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.1)  # bf16 weights


def test_pyfunc_predict(merged_dir):
    from sentibridge.inference.serving import OUTPUT_COLUMNS, SentimentModel

    model = SentimentModel().load(merged_dir, precision="fp32")
    frame = pd.DataFrame({"text": ["I love it", "awful"], "language": ["en", "de"]}, index=[10, 11])
    result = model.predict(None, frame)
    assert list(result.columns) == OUTPUT_COLUMNS and list(result.index) == [10, 11]
    assert set(result["label"]) <= {"negative", "neutral", "positive"}
    scores = result[[c for c in OUTPUT_COLUMNS if c.startswith("score_")]].sum(axis=1)
    assert scores.round(5).eq(1.0).all()
    no_language = model.predict(None, frame[["text"]])
    assert len(no_language) == 2


def test_pyfunc_keeps_bad_rows_with_an_error(merged_dir):
    """A served request is checked row by row as `sentibridge predict` checks a file (issue 29)."""
    from sentibridge.inference.serving import SentimentModel

    model = SentimentModel().load(merged_dir, precision="fp32")
    frame = pd.DataFrame({"text": ["I love it", "", None, "ok", "x" * 5000], "language": ["en", "en", "en", "xx", None]})
    result = model.predict(None, frame)
    assert result["error"].tolist() == [None, "empty text", "missing text", "unknown language code 'xx'", None]
    assert result["label"].isna().tolist() == [False, True, True, True, False]
    assert result["truncated"].tolist() == [False, None, None, None, True]
    json.dumps(result.to_dict(orient="records"))  # what the scoring server sends: plain values and null
    with pytest.raises(ValueError, match="'text' column"):
        model.predict(None, frame[["language"]])
