"""Instruction records for sentiment SFT, and the one prompt format shared by training and scoring.

A record is a dict with ``instruction``, ``input``, ``output`` (the label word) plus ``id``,
``language`` and ``label``. ``format_prompt`` renders a record into the text the model sees
before its answer; ``encode_example`` adds the answer tokens. Both training and scoring go
through these two functions, so the prompt cannot drift between them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import PreTrainedTokenizerBase

from sentibridge.labels import LABELS
from sentibridge.languages import language_name

#: Label words; the index is the integer label (``labels.LABELS``, TweetEval order).
LABEL_WORDS: tuple[str, ...] = LABELS

#: The template used for evaluation and serving, so that what is measured is what is served.
SERVING_TEMPLATE = 0

#: Each template names the task, the language and the three answers. ``{language}`` is the
#: English language name followed by a space, or empty when the language is unknown.
TEMPLATES: tuple[str, ...] = (
    "Classify the sentiment of the following {language}text as negative, neutral or positive. "
    "Answer with one word.",
    "What is the sentiment of this {language}review or post? Reply with exactly one word: "
    "negative, neutral or positive.",
    "Read the {language}text below and label its overall sentiment. "
    "Possible labels: negative, neutral, positive.",
    "Sentiment analysis ({language}input). Is the author's attitude negative, neutral or positive? "
    "Give only the label.",
)


def render_instruction(template: int, language: str | None) -> str:
    """The instruction text of template ``template`` for an ISO language code."""
    name = language_name(language)
    return TEMPLATES[template].format(language=f"{name} " if name else "")


def choose_template(row_id: str, seed: int) -> int:
    """Deterministic template index for a row: a hash of seed and id, stable across processes."""
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % len(TEMPLATES)


def render_demonstrations(demonstrations: Sequence[Mapping[str, Any]]) -> str:
    """Labelled examples as the prompt shows them, or "" for none."""
    if not demonstrations:
        return ""
    shown = "\n\n".join(f"Text: {d['text']}\nAnswer: {d['output']}" for d in demonstrations)
    return f"Examples:\n\n{shown}\n\n"


def _user_message(record: Mapping[str, Any]) -> str:
    # Examples follow the instruction, so prompts of one template still share their prefix.
    examples = render_demonstrations(record.get("demonstrations") or ())
    return f"{record['instruction']}\n\n{examples}Text: {record['input']}"


def format_prompt(tokenizer: PreTrainedTokenizerBase, record: Mapping[str, Any]) -> str:
    """The full text before the answer, special tokens included.

    Uses the tokenizer's chat template when it has one (the embedded Gemma does), else a plain
    ``instruction / Text / Answer:`` layout behind the BOS token. Tokenize the result with
    ``add_special_tokens=False``: the BOS is already in the text.
    """
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": _user_message(record)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token or ""
    return f"{bos}{_user_message(record)}\nAnswer:"


def _answer_text(tokenizer: PreTrainedTokenizerBase, record: Mapping[str, Any]) -> str:
    """The text the loss covers: the label word alone.

    No turn terminator: scoring reads only the label word's likelihood, and a base model gives
    ``<end_of_turn>`` a log-probability near -30, whose gradient would dominate the first steps.
    """
    if tokenizer.chat_template:
        return str(record["output"])
    return f" {record['output']}"  # plain layout: the answer follows "Answer:" after a space


def encode_example(tokenizer: PreTrainedTokenizerBase, record: Mapping[str, Any]) -> tuple[list[int], int]:
    """Token ids of prompt + answer, and the number of prompt tokens (loss starts after them).

    Prompt and answer are tokenized separately and concatenated, so the boundary is exact and
    the prompt tokens equal those the scorer sees.
    """
    prompt_ids = tokenizer(format_prompt(tokenizer, record), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(_answer_text(tokenizer, record), add_special_tokens=False)["input_ids"]
    return list(prompt_ids) + list(answer_ids), len(prompt_ids)


def answer_budget(tokenizer: PreTrainedTokenizerBase) -> int:
    """The most tokens any answer (a label word) takes, reserved inside max_length."""
    probe = {"instruction": "", "input": ""}
    return max(
        len(tokenizer(_answer_text(tokenizer, {**probe, "output": w}), add_special_tokens=False)["input_ids"])
        for w in LABEL_WORDS
    )


def label_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Token ids of each label word exactly as they follow the prompt in training.

    The answer is tokenized on its own (see ``encode_example``); the terminator shared by all
    answers (``<end_of_turn>``, EOS) is stripped, leaving the label word's tokens. For Gemma
    with its chat template each label is one token.
    """
    probe = {"instruction": "", "input": ""}

    def answer_ids(word: str) -> list[int]:
        return tokenizer(_answer_text(tokenizer, {**probe, "output": word}), add_special_tokens=False)["input_ids"]

    empty = answer_ids("")
    result = []
    for word in LABEL_WORDS:
        ids = answer_ids(word)
        shared = 0
        while shared < min(len(ids), len(empty)) and ids[-1 - shared] == empty[-1 - shared]:
            shared += 1
        result.append(list(ids[: len(ids) - shared]))
    if any(not ids for ids in result) or len({tuple(ids) for ids in result}) != len(result):
        raise ValueError(f"label words do not tokenize to distinct, non-empty answers: {result}")
    return result


def _truncate_input(
    tokenizer: PreTrainedTokenizerBase, record: dict[str, Any], budget: int
) -> dict[str, Any]:
    """Fit the prompt into ``budget`` tokens: drop the farthest demonstrations, then cut the input."""
    prompt_len = len(tokenizer(format_prompt(tokenizer, record), add_special_tokens=False)["input_ids"])
    while prompt_len > budget and record.get("demonstrations"):
        record = {**record, "demonstrations": record["demonstrations"][:-1]}
        prompt_len = len(tokenizer(format_prompt(tokenizer, record), add_special_tokens=False)["input_ids"])
    if prompt_len <= budget:
        return record
    input_ids = tokenizer(record["input"], add_special_tokens=False)["input_ids"]
    keep = len(input_ids) - (prompt_len - budget)
    # Decoding then re-encoding can merge tokens differently, so re-check and shave further.
    while True:
        if keep <= 0:
            overhead = prompt_len - len(input_ids)
            raise ValueError(
                f"max_length leaves no room for the input: the template alone takes {overhead} tokens "
                f"of a {budget}-token prompt budget"
            )
        record = {**record, "input": tokenizer.decode(input_ids[:keep], skip_special_tokens=True)}
        prompt_len = len(tokenizer(format_prompt(tokenizer, record), add_special_tokens=False)["input_ids"])
        if prompt_len <= budget:
            return record
        keep -= max(1, prompt_len - budget)


def build_records(
    df: pd.DataFrame,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    seed: int,
    template: int | None = None,
    demonstrations: Sequence[Sequence[Mapping[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Turn split rows (``id, text, label, language``) into instruction records.

    The whole training sequence (prompt + answer) fits in ``max_length`` tokens: the farthest
    demonstrations go first, then the input text is truncated. ``template`` forces one template
    (serving); by default the template is chosen per row from ``seed`` and ``id``.
    ``demonstrations`` (one list per row, from ``demonstrations.demonstrations_for``) become
    the record's ``demonstrations`` field.
    """
    budget = max_length - answer_budget(tokenizer)
    records: list[dict[str, Any]] = []
    for position, row in enumerate(df.itertuples(index=False)):
        row_id = str(row.id)
        label = int(row.label) if "label" in df.columns and not pd.isna(row.label) else None
        language = getattr(row, "language", None)
        index = choose_template(row_id, seed) if template is None else template
        record = {
            "id": row_id,
            "instruction": render_instruction(index, language),
            "input": str(row.text),
            "output": LABEL_WORDS[label] if label is not None else "",
            "language": None if language is None or pd.isna(language) else str(language),
            "label": label,
        }
        weight = getattr(row, "weight", 1.0)
        if not pd.isna(weight) and float(weight) != 1.0:  # only downweighted rows carry one
            record["weight"] = float(weight)
        if demonstrations is not None:
            record["demonstrations"] = [{"text": d["text"], "output": d["output"]} for d in demonstrations[position]]
        records.append(_truncate_input(tokenizer, record, budget))
    return records


def export_llamafactory(records: Sequence[Mapping[str, Any]], out_dir: Path, name: str = "sentibridge_train") -> Path:
    """Write ``<name>.json`` (alpaca format) and register it in ``out_dir/dataset_info.json``.

    The ``instruction`` field holds the whole user message (instruction, demonstrations and
    ``Text: <input>``) and ``input`` stays empty: LLaMA-Factory joins the two with one newline,
    so only this way does a model trained there see exactly the prompt sentibridge scores.
    Existing entries of ``dataset_info.json`` are kept, so train and val can be exported into the
    same folder and passed to ``llamafactory-cli train --dataset_dir out_dir --dataset <name>``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"instruction": _user_message(r), "input": "", "output": r["output"]} for r in records]
    (out_dir / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    info_path = out_dir / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    info[name] = {
        "file_name": f"{name}.json",
        "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output"},
    }
    info_path.write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info_path
