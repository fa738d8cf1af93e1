"""The real Gemma-3 tokenizer cut down to the tokens the tests' texts use.

The tiny test base model (``TINY_BASE``) is for tests about the stack, the registry and the CLI,
not the model. With Gemma's whole tokenizer (262k tokens, 6k added ones) every `sentibridge`
process spends seconds loading it, and a 64-wide model carries a 17M-parameter embedding that
every step saves, merges and logs. The cut keeps Gemma's pipeline (normalizer, byte fallback,
chat template, special tokens) and every token, and every merge, that the real tokenizer uses on
``corpus``: those texts tokenize as with Gemma (checked by ``prune``), and any other text still
tokenizes, through single characters and byte fallback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

#: Special tokens the prompts and the model config use; the other 6k added tokens go.
SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>")


def prune(source: Path, target: Path, corpus: Iterable[str]) -> int:
    """Write to ``target`` the tokenizer files of ``source`` cut to ``corpus``; returns the vocabulary size."""
    from tokenizers import Tokenizer

    full = Tokenizer.from_file(str(source / "tokenizer.json"))
    texts = list(corpus)
    used: set[str] = set(SPECIAL) | {f"<0x{b:02X}>" for b in range(256)}
    for encoding in full.encode_batch(texts, add_special_tokens=False):
        used.update(encoding.tokens)

    spec = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec["model"]
    by_result: dict[str, list[tuple[str, str]]] = {}
    for left, right in model["merges"]:
        by_result.setdefault(left + right, []).append((left, right))
    # Every way BPE may build a kept token must stay buildable, or texts would split differently.
    pending = list(used)
    while pending:
        for left, right in by_result.get(pending.pop(), ()):
            for part in (left, right):
                if part not in used:
                    used.add(part)
                    pending.append(part)

    old_vocab = model["vocab"]
    kept = sorted((token for token in used if token in old_vocab), key=old_vocab.__getitem__)
    new_id = {token: i for i, token in enumerate(kept)}
    model["vocab"] = new_id
    model["merges"] = [[a, b] for a, b in model["merges"] if a in new_id and b in new_id and a + b in new_id]
    spec["added_tokens"] = [{**t, "id": new_id[t["content"]]} for t in spec["added_tokens"] if t["content"] in SPECIAL]
    for special in spec["post_processor"]["special_tokens"].values():
        special["ids"] = [new_id[token] for token in special["tokens"]]

    target.mkdir(parents=True, exist_ok=True)
    (target / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    for name in ("tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (source / name).is_file():
            (target / name).write_text((source / name).read_text(encoding="utf-8"), encoding="utf-8")

    cut = Tokenizer.from_file(str(target / "tokenizer.json"))
    for text, encoding in zip(texts, full.encode_batch(texts, add_special_tokens=False), strict=True):
        assert cut.encode(text, add_special_tokens=False).tokens == encoding.tokens, text[:80]
    return len(new_id)
