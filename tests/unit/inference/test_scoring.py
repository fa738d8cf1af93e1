"""Label-word scoring: argmax of label log-likelihoods, padding-independent batching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sentibridge.model.instructions import build_records, format_prompt, label_token_ids
from sentibridge.inference.scoring import _batch_label_scores, score_prompts, score_records

TEXTS = ["Great!", "This is the worst experience I have had in years, truly awful.", "ok", "Das ist gut so."]


@pytest.fixture(scope="module")
def records(gemma_tokenizer):
    df = pd.DataFrame({"id": list("abcd"), "text": TEXTS, "label": [2, 0, 1, 2], "language": ["en", "en", "en", "de"]})
    return build_records(df, gemma_tokenizer, 128, seed=0)


def _reference_logprobs(model, tokenizer, record) -> torch.Tensor:
    """Full-vocabulary log-probs of each label word after one unpadded prompt."""
    ids = tokenizer(format_prompt(tokenizer, record), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    logprobs = torch.log_softmax(logits, -1)
    return torch.tensor([logprobs[t[0]].item() for t in label_token_ids(tokenizer)])


def test_scores_match_full_forward_and_pick_max(records, gemma_tokenizer, tiny_gemma):
    model = tiny_gemma(1)
    result = score_records(model, gemma_tokenizer, records, batch_size=4, device="cpu", progress=False)
    assert result.probs.shape == (4, 3) and result.preds.shape == (4,)
    np.testing.assert_allclose(result.probs.sum(1), 1.0, rtol=1e-5)
    for row, record in enumerate(records):
        reference = _reference_logprobs(model, gemma_tokenizer, record)
        # Renormalised over the labels, the full-vocabulary log-probs give the same probabilities.
        np.testing.assert_allclose(result.probs[row], torch.softmax(reference, -1).numpy(), rtol=1e-4, atol=1e-5)
        assert result.preds[row] == int(reference.argmax())


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batched_equals_one_by_one(records, gemma_tokenizer, tiny_gemma, padding_side):
    model = tiny_gemma(2)
    gemma_tokenizer.padding_side = padding_side
    try:
        batched = score_records(model, gemma_tokenizer, records, batch_size=3, device="cpu", progress=False)
        single = [score_records(model, gemma_tokenizer, [r], batch_size=1, device="cpu", progress=False) for r in records]
    finally:
        gemma_tokenizer.padding_side = "left"
    np.testing.assert_allclose(batched.label_scores, np.concatenate([s.label_scores for s in single]), rtol=1e-4, atol=1e-4)
    assert batched.preds.tolist() == [int(s.preds[0]) for s in single]


def test_multi_token_labels_use_teacher_forcing(gemma_tokenizer, tiny_gemma):
    model = tiny_gemma(3)
    prompts = [gemma_tokenizer("<bos>Hello there", add_special_tokens=False)["input_ids"], gemma_tokenizer("<bos>Hi", add_special_tokens=False)["input_ids"]]
    labels = [[100, 200], [100, 300], [400]]  # two labels share a first token
    got = _batch_label_scores(model, prompts, labels, gemma_tokenizer.pad_token_id, torch.device("cpu"), "fp32")
    for row, prompt in enumerate(prompts):
        for j, tokens in enumerate(labels):
            ids = torch.tensor([prompt + tokens])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            expected = sum(logprobs[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens))
            assert got[row, j].item() == pytest.approx(expected, abs=1e-4)


def test_empty_input(gemma_tokenizer, tiny_gemma):
    result = score_prompts(tiny_gemma(0), gemma_tokenizer, [], batch_size=4, device="cpu", progress=False)
    assert result.probs.shape == (0, 3)


def test_shared_prefix_cache_matches_plain_forward(gemma_tokenizer, tiny_gemma, monkeypatch):
    import sentibridge.inference.scoring as scoring

    model = tiny_gemma(4)
    df = pd.DataFrame({"id": list("wxyz"), "text": ["good", "a much longer text than the others", "bad", "fine"], "label": [2, 1, 0, 1], "language": ["en"] * 4})
    records = build_records(df, gemma_tokenizer, 128, seed=0, template=0)
    with_prefix = score_records(model, gemma_tokenizer, records, batch_size=4, device="cpu", progress=False)
    monkeypatch.setattr(scoring, "MIN_SHARED_PREFIX", 10_000)
    plain = score_records(model, gemma_tokenizer, records, batch_size=4, device="cpu", progress=False)
    np.testing.assert_allclose(with_prefix.label_scores, plain.label_scores, rtol=1e-4, atol=1e-4)


def test_prefix_is_computed_once_per_group(gemma_tokenizer, tiny_gemma, monkeypatch):
    import sentibridge.inference.scoring as scoring

    model = tiny_gemma(5)
    df = pd.DataFrame({"id": [str(i) for i in range(7)], "text": ["good", "bad", "fine", "ok then", "meh", "great", "no"], "label": [2, 0, 1, 1, 1, 2, 0], "language": ["en"] * 4 + ["de"] * 3})
    records = build_records(df, gemma_tokenizer, 128, seed=0, template=0)
    calls = []
    real_prefix = scoring._prefix
    monkeypatch.setattr(scoring, "_prefix", lambda *a: calls.append(1) or real_prefix(*a))
    grouped = score_records(model, gemma_tokenizer, records, batch_size=2, device="cpu", progress=False)
    assert len(calls) == 2  # two languages, two instructions: one prefix pass each, not one per batch
    single = np.concatenate([score_records(model, gemma_tokenizer, [r], batch_size=1, device="cpu", progress=False).probs for r in records])
    np.testing.assert_allclose(grouped.probs, single, rtol=1e-4, atol=1e-5)


def test_label_head_equals_full_head(tiny_gemma):
    from sentibridge.model.base import head_logits

    model = tiny_gemma(6)
    hidden = torch.randn(3, model.config.hidden_size)
    with torch.no_grad():
        full, picked = head_logits(model, hidden), head_logits(model, hidden, [5, 17, 2])
    np.testing.assert_allclose(picked.numpy(), full[:, [5, 17, 2]].numpy(), rtol=1e-5, atol=1e-5)
