"""Prediction by scoring the three label words, not by generating text.

One forward pass per batch over the prompts gives each label word's score as the answer; the
label with the highest wins. No decoding loop and no answer parsing: a prediction is always
one of the three labels, and the probabilities over the labels come for free.

When every label word is a single token (Gemma with its chat template), one pass suffices,
and the lm_head runs only for the three label tokens at the last position: with a 262k-token
vocabulary the full head would cost about an eighth of the whole evaluation. Otherwise each
label is scored by teacher forcing: the sum of its tokens' full-vocabulary log-probabilities,
one pass per distinct label prefix. Works with plain, merged and peft-wrapped models.

Prompts are grouped by instruction. The prefix a group shares (chat header and instruction,
about half of each prompt) runs once per group and is reused through the key/value cache.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from sentibridge.model.base import decoder_and_head, head_logits
from sentibridge.model.instructions import format_prompt, label_token_ids
from sentibridge.model.precision import Precision, autocast


@dataclass
class ScoreResult:
    """Scores of N prompts: ``probs`` (N, 3) over the labels and ``preds`` (N,) their argmax.

    ``label_scores`` (N, 3) are the log-scale scores behind ``probs`` (``probs`` is their
    softmax): the label-token logits for one-token labels, else each label's summed
    full-vocabulary log-likelihood.
    """

    probs: np.ndarray
    preds: np.ndarray
    label_scores: np.ndarray


def _right_pad(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Padding is ours (right side) whatever the tokenizer's padding_side: positions then start at
    # 0 in every row and the scored position is simply each row's own length - 1.
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def _shared_prefix_len(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix all prompts share, leaving each at least one token of its own."""
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def _cache_kw(body: torch.nn.Module) -> str:
    # transformers renamed ``past_key_values`` to ``cache`` (5.2x); accept either.
    return "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"


@dataclass
class _Prefix:
    """A token prefix shared by a group of prompts, with its key/value cache (batch of one)."""

    length: int
    cache: Any = None


def _prefix(body: torch.nn.Module, tokens: Sequence[int], device: torch.device, precision: Precision) -> _Prefix:
    """Run a shared prefix once; too short a prefix is not worth a separate pass."""
    if len(tokens) < MIN_SHARED_PREFIX:
        return _Prefix(0)
    ids = torch.tensor([list(tokens)], device=device)
    with autocast(precision, device):
        cache = getattr(body(input_ids=ids, use_cache=True), _cache_kw(body))
    return _Prefix(len(tokens), cache)


def _hidden_states(
    body: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    prefix: _Prefix,
    pad_id: int,
    device: torch.device,
    precision: Precision,
) -> torch.Tensor:
    """Last hidden states (B, L - prefix.length, H) of the tokens after the shared prefix.

    The prefix's key/value cache is copied, repeated over the rows, and the rows' own tokens
    attend to it, as in decoding. Without a prefix this is a plain forward pass.
    """
    shared = prefix.length
    cache = None
    if shared:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(sequences))
    ids, mask = _right_pad([s[shared:] for s in sequences], pad_id, device)
    positions = (shared + torch.arange(ids.shape[1], device=device)).unsqueeze(0).expand_as(ids)
    if shared:
        mask = torch.cat([torch.ones((len(sequences), shared), dtype=mask.dtype, device=device), mask], dim=1)
    with autocast(precision, device):
        return body(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=cache is not None, **{_cache_kw(body): cache}
        ).last_hidden_state


#: Below this many shared tokens, a separate prefix pass costs more than it saves.
MIN_SHARED_PREFIX = 8


def _batch_label_scores(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device,
    precision: Precision,
    prefix: _Prefix | None = None,
) -> torch.Tensor:
    """(B, n_labels) label scores after each prompt (see ``ScoreResult.label_scores``).

    ``prefix`` must be a prefix of every prompt (``_prefix`` of their shared tokens).
    """
    body, _ = decoder_and_head(model)
    prefix = prefix or _Prefix(0)
    lengths = torch.tensor([len(p) - prefix.length for p in prompts])
    rows = torch.arange(len(prompts)).unsqueeze(1)
    if all(len(tokens) == 1 for tokens in labels):
        hidden = _hidden_states(body, prompts, prefix, pad_id, device, precision)
        last = hidden[rows.squeeze(1).to(device), (lengths - 1).to(device)]
        return head_logits(model, last, [tokens[0] for tokens in labels]).cpu()
    out = torch.zeros((len(prompts), len(labels)), dtype=torch.float32)
    # Labels that share all but their last token share a pass.
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, tokens in enumerate(labels):
        groups.setdefault(tuple(tokens[:-1]), []).append(j)
    for label_prefix, members in groups.items():
        hidden = _hidden_states(body, [list(p) + list(label_prefix) for p in prompts], prefix, pad_id, device, precision)
        steps = len(label_prefix) + 1
        positions = (lengths - 1).unsqueeze(1) + torch.arange(steps).unsqueeze(0)  # (B, steps)
        # The head runs only at the scored positions: a (B, steps, V) slice, not (B, L, V).
        logprobs = torch.log_softmax(head_logits(model, hidden[rows.to(device), positions.to(device)]), dim=-1)
        for j in members:
            target = torch.tensor(labels[j], device=device).expand(len(prompts), steps)
            out[:, j] = logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1).float().cpu()
    return out


def _batches(encoded: Sequence[Sequence[int]], keys: Sequence[str], batch_size: int) -> list[list[list[int]]]:
    """Row indices per group, each group cut into batches sorted by length (little padding)."""
    groups: dict[str, list[int]] = {}
    for k in sorted(range(len(encoded)), key=lambda k: (keys[k], len(encoded[k]))):
        groups.setdefault(keys[k], []).append(k)
    return [[index[i : i + batch_size] for i in range(0, len(index), batch_size)] for index in groups.values()]


@torch.inference_mode()
def score_prompts(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    batch_size: int,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    progress: bool = True,
    group_keys: Sequence[str] | None = None,
) -> ScoreResult:
    """Score rendered prompts (``instructions.format_prompt`` output) against the label words.

    ``group_keys`` (e.g. the instruction of each record) keeps prompts with a common prefix
    together, so the prefix is computed once per group.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    labels = label_token_ids(tokenizer)
    if not prompts:
        empty = np.zeros((0, len(labels)), dtype=np.float32)
        return ScoreResult(probs=empty, preds=np.zeros(0, dtype=np.int64), label_scores=empty)
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    keys = list(group_keys) if group_keys is not None else [""] * len(encoded)
    body, _ = decoder_and_head(model)
    was_training = model.training
    model.eval()
    scores = torch.zeros((len(encoded), len(labels)), dtype=torch.float32)
    bar = tqdm(total=len(encoded), desc="score", disable=not progress, dynamic_ncols=True)
    for group in _batches(encoded, keys, batch_size):
        members = [encoded[k] for batch in group for k in batch]
        shared = members[0][: _shared_prefix_len(members)]
        prefix = _prefix(body, shared, device, precision)
        for index in group:
            scores[index] = _batch_label_scores(model, [encoded[k] for k in index], labels, pad_id, device, precision, prefix)
            bar.update(len(index))
    bar.close()
    model.train(was_training)
    probs = torch.softmax(scores, dim=-1)
    return ScoreResult(probs=probs.numpy(), preds=probs.argmax(-1).numpy(), label_scores=scores.numpy())


def score_records(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Mapping[str, Any]],
    batch_size: int,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    progress: bool = True,
) -> ScoreResult:
    """Score instruction records (``instructions.build_records``) with the shared prompt format."""
    prompts = [format_prompt(tokenizer, record) for record in records]
    groups = [str(record.get("instruction", "")) for record in records]
    return score_prompts(model, tokenizer, prompts, batch_size, device, precision, progress, groups)
