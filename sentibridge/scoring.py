"""Prediction by scoring the three label words, not by generating text.

One forward pass per batch over the prompts gives the log-likelihood of each label word as
the answer; the label with the highest wins. No decoding loop and no answer parsing: a
prediction is always one of the three labels, and the probabilities come for free.

When every label word is a single token (Gemma with its chat template), one pass suffices.
Otherwise each label is scored by teacher forcing: the sum of its tokens' log-probabilities,
one pass per distinct label prefix. Works with plain, merged and peft-wrapped models.

The prompt prefix a batch shares (chat header and instruction) runs once per batch and is
reused through the key/value cache, which is most of what makes this several times faster
than ``generate()``, besides skipping the decoding steps.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from sentibridge.base_model import decoder_and_head, head_logits
from sentibridge.instructions import format_prompt, label_token_ids
from sentibridge.precision import Precision, autocast


@dataclass
class ScoreResult:
    """Scores of N prompts: ``probs`` (N, 3) renormalised over the labels, ``preds`` (N,),
    and ``label_logprobs`` (N, 3), each label word's log-likelihood under the full vocabulary."""

    probs: np.ndarray
    preds: np.ndarray
    label_logprobs: np.ndarray


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


def _hidden_states(
    body: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    shared: int,
    pad_id: int,
    device: torch.device,
    precision: Precision,
) -> torch.Tensor:
    """Last hidden states (B, L - shared, H) of the tokens after the first ``shared`` ones.

    The shared prefix (chat header and instruction, about half of each prompt) runs once for
    the batch; its key/value cache is repeated over the rows and the rows' own tokens attend to
    it, as in decoding. With ``shared == 0`` this is a plain forward pass.
    """
    cache = None
    # transformers renamed ``past_key_values`` to ``cache`` (5.2x); accept either.
    cache_kw = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
    if shared:
        prefix = torch.tensor([list(sequences[0][:shared])], device=device)
        with autocast(precision, device):
            cache = getattr(body(input_ids=prefix, use_cache=True), cache_kw)
        cache.batch_repeat_interleave(len(sequences))
    ids, mask = _right_pad([s[shared:] for s in sequences], pad_id, device)
    positions = (shared + torch.arange(ids.shape[1], device=device)).unsqueeze(0).expand_as(ids)
    if shared:
        mask = torch.cat([torch.ones((len(sequences), shared), dtype=mask.dtype, device=device), mask], dim=1)
    with autocast(precision, device):
        return body(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=cache is not None, **{cache_kw: cache}
        ).last_hidden_state


#: Below this many shared tokens, a separate prefix pass costs more than it saves.
MIN_SHARED_PREFIX = 8


def _batch_label_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device,
    precision: Precision,
) -> torch.Tensor:
    """(B, n_labels) summed log-probs of each label's tokens after each prompt."""
    body, _ = decoder_and_head(model)
    out = torch.zeros((len(prompts), len(labels)), dtype=torch.float32)
    shared = _shared_prefix_len(prompts)
    shared = shared if shared >= MIN_SHARED_PREFIX else 0
    # Labels that share all but their last token share a pass (all of them, for one-token labels).
    groups: dict[tuple[int, ...], list[int]] = {}
    for j, tokens in enumerate(labels):
        groups.setdefault(tuple(tokens[:-1]), []).append(j)
    lengths = torch.tensor([len(p) - shared for p in prompts])
    rows = torch.arange(len(prompts)).unsqueeze(1)
    for prefix, members in groups.items():
        hidden = _hidden_states(body, [list(p) + list(prefix) for p in prompts], shared, pad_id, device, precision)
        steps = len(prefix) + 1
        positions = (lengths - 1).unsqueeze(1) + torch.arange(steps).unsqueeze(0)  # (B, steps)
        # The head runs only at the scored positions: a (B, steps, V) slice, not (B, L, V).
        logprobs = torch.log_softmax(head_logits(model, hidden[rows.to(device), positions.to(device)]), dim=-1)
        for j in members:
            target = torch.tensor(labels[j], device=device).expand(len(prompts), steps)
            out[:, j] = logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(-1).float().cpu()
    return out


@torch.inference_mode()
def score_prompts(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    batch_size: int = 16,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    progress: bool = True,
    group_keys: Sequence[str] | None = None,
) -> ScoreResult:
    """Score rendered prompts (``instructions.format_prompt`` output) against the label words.

    ``group_keys`` (e.g. the instruction of each record) keeps prompts with a common prefix in
    the same batches, so the prefix is computed once per batch.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    labels = label_token_ids(tokenizer)
    if not prompts:
        empty = np.zeros((0, len(labels)), dtype=np.float32)
        return ScoreResult(probs=empty, preds=np.zeros(0, dtype=np.int64), label_logprobs=empty)
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    was_training = model.training
    model.eval()
    # Batches stay within a group and are sorted by length, so they share a prefix and pad
    # little; results go back to input order.
    keys = list(group_keys) if group_keys is not None else [""] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda k: (keys[k], len(encoded[k])))
    batches: list[list[int]] = []
    for k in order:
        if batches and len(batches[-1]) < batch_size and keys[batches[-1][0]] == keys[k]:
            batches[-1].append(k)
        else:
            batches.append([k])
    logprobs = torch.zeros((len(encoded), len(labels)), dtype=torch.float32)
    bar = tqdm(total=len(encoded), desc="score", disable=not progress, dynamic_ncols=True)
    for index in batches:
        logprobs[index] = _batch_label_logprobs(
            model, [encoded[k] for k in index], labels, pad_id, device, precision
        )
        bar.update(len(index))
    bar.close()
    model.train(was_training)
    probs = torch.softmax(logprobs, dim=-1)
    return ScoreResult(probs=probs.numpy(), preds=probs.argmax(-1).numpy(), label_logprobs=logprobs.numpy())


def score_records(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Mapping[str, Any]],
    batch_size: int = 16,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    progress: bool = True,
) -> ScoreResult:
    """Score instruction records (``instructions.build_records``) with the shared prompt format."""
    prompts = [format_prompt(tokenizer, record) for record in records]
    groups = [str(record.get("instruction", "")) for record in records]
    return score_prompts(model, tokenizer, prompts, batch_size, device, precision, progress, groups)
