"""Instruction records: templates, truncation of the input only, the shared prompt format."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sentibridge.model.instructions import (
    LABEL_WORDS,
    TEMPLATES,
    answer_budget,
    build_records,
    choose_template,
    encode_example,
    export_llamafactory,
    format_prompt,
    label_token_ids,
    render_instruction,
)


def _frame(texts, languages=None, labels=None):
    n = len(texts)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": texts,
            "label": labels or [i % 3 for i in range(n)],
            "language": languages or ["en"] * n,
            "split": ["train"] * n,
        }
    )


def test_templates_name_task_language_and_labels():
    assert len(TEMPLATES) >= 3
    for index in range(len(TEMPLATES)):
        text = render_instruction(index, "ar")
        assert "Arabic" in text and "sentiment" in text.lower()
        assert all(word in text for word in LABEL_WORDS)
    assert "{language}" not in render_instruction(0, None)


@pytest.mark.parametrize("language,name", [("en", "English"), ("hi", "Hindi"), ("de", "German")])
def test_language_names_in_english(language, name):
    assert name in render_instruction(0, language)


def test_build_records_keys_and_outputs(gemma_tokenizer):
    records = build_records(_frame(["good", "meh", "bad"], labels=[2, 1, 0]), gemma_tokenizer, 128, seed=1)
    assert [r["output"] for r in records] == ["positive", "neutral", "negative"]
    for record in records:
        assert set(record) >= {"instruction", "input", "output", "id", "language", "label"}


def test_template_choice_is_deterministic_and_varied():
    first = [choose_template(f"id-{i}", seed=7) for i in range(40)]
    assert first == [choose_template(f"id-{i}", seed=7) for i in range(40)]
    assert len(set(first)) > 1
    assert first != [choose_template(f"id-{i}", seed=8) for i in range(40)]


def test_forced_template(gemma_tokenizer):
    records = build_records(_frame(["a", "b", "c"]), gemma_tokenizer, 128, seed=0, template=2)
    assert {r["instruction"] for r in records} == {render_instruction(2, "en")}


def test_truncation_cuts_input_only(gemma_tokenizer):
    long_text = "This phone is great but the battery is weak. " * 80
    max_length = 96
    (record,) = build_records(_frame([long_text], languages=["fr"]), gemma_tokenizer, max_length, seed=3)
    ids, prompt_len = encode_example(gemma_tokenizer, record)
    assert len(ids) <= max_length
    assert prompt_len + answer_budget(gemma_tokenizer) <= max_length
    assert record["instruction"] == render_instruction(choose_template("r0", 3), "fr")
    assert long_text.startswith(record["input"].rstrip())
    assert 0 < len(record["input"]) < len(long_text)


def test_short_input_is_untouched(gemma_tokenizer):
    (record,) = build_records(_frame(["Nice."]), gemma_tokenizer, 256, seed=0)
    assert record["input"] == "Nice."


def test_budget_too_small_for_template_fails(gemma_tokenizer):
    with pytest.raises(ValueError, match="no room"):
        build_records(_frame(["some text here"]), gemma_tokenizer, 16, seed=0)


def test_prompt_uses_chat_template_and_answer_follows(gemma_tokenizer):
    (record,) = build_records(_frame(["I love it"], labels=[2]), gemma_tokenizer, 128, seed=0)
    prompt = format_prompt(gemma_tokenizer, record)
    assert prompt.startswith("<bos><start_of_turn>user\n") and prompt.endswith("<start_of_turn>model\n")
    ids, prompt_len = encode_example(gemma_tokenizer, record)
    assert ids[:prompt_len] == gemma_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert gemma_tokenizer.decode(ids[prompt_len:]) == "positive"


def test_label_tokens_are_single_and_distinct(gemma_tokenizer):
    labels = label_token_ids(gemma_tokenizer)
    assert all(len(tokens) == 1 for tokens in labels)
    assert len({tokens[0] for tokens in labels}) == 3
    assert [gemma_tokenizer.decode(t) for t in labels] == list(LABEL_WORDS)


def test_export_llamafactory(tmp_path, gemma_tokenizer):
    records = build_records(_frame(["good", "bad"], labels=[2, 0]), gemma_tokenizer, 128, seed=0)
    export_llamafactory(records, tmp_path, name="sb_train")
    export_llamafactory(records[:1], tmp_path, name="sb_val")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"sb_train", "sb_val"}
    assert info["sb_train"]["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    rows = json.loads((tmp_path / info["sb_train"]["file_name"]).read_text())
    assert rows[0] == {"instruction": f"{records[0]['instruction']}\n\nText: good", "input": "", "output": "positive"}
    # LLaMA-Factory's alpaca reader makes the user turn of instruction and input; with the chat
    # template around it, that is the exact prompt sentibridge trains and scores.
    user_turn = "\n".join(part for part in (rows[0]["instruction"], rows[0]["input"]) if part)
    messages = [{"role": "user", "content": user_turn}]
    assert gemma_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == format_prompt(
        gemma_tokenizer, records[0]
    )
