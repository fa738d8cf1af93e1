"""Training batches: tokenized examples, padding, and the epoch's batch order.

Batches are a pure function of (seed, epoch), which is what lets a resumed run, or N
data-parallel ranks, see exactly the rows an uninterrupted single process would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler

from sentibridge.model.instructions import encode_example

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One tokenized record: prompt + answer ids; the loss covers ids from ``prompt_len`` on."""

    input_ids: list[int]
    prompt_len: int
    #: Loss weight of the row's answer tokens (``data.label_issues: downweight`` lowers flagged rows').
    weight: float = 1.0


def encode_records(records: Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase) -> list[Example]:
    """Tokenize records with the shared prompt format (``instructions.encode_example``)."""
    return [Example(*encode_example(tokenizer, record), float(record.get("weight", 1.0))) for record in records]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; ``labels`` are the input ids with prompt and padding set to -100.

    ``weights`` (per row) is there only when a row's weight is not 1, so unweighted batches
    stay valid keyword arguments of a Hugging Face model.
    """
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        ids = torch.tensor(example.input_ids, dtype=torch.long)
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        labels[row, example.prompt_len : len(ids)] = ids[example.prompt_len :]
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    if any(e.weight != 1.0 for e in examples):
        batch["weights"] = torch.tensor([e.weight for e in examples], dtype=torch.float32)
    return batch


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """Batches of example indices for one epoch, a pure function of (seed, epoch).

    Being pure is what lets a resumed run pick up mid-epoch on exactly the same batches. With
    ``group_by_length`` the order is transformers' ``LengthGroupedSampler``'s (similar lengths
    share a batch, so rows pad little; the longest batch first, so memory problems show up at
    once), else a plain shuffle.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if group_by_length:
        order = list(LengthGroupedSampler(batch_size, lengths=list(lengths), generator=generator))
    else:
        order = torch.randperm(len(lengths), generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def answer_tokens(example: Example) -> int:
    """Loss targets of one example: the ids after the prompt (position 0 is never a target)."""
    return len(example.input_ids) - max(example.prompt_len, 1)


def shard_batch(examples: Sequence[Example], rank: int, world_size: int, pad_id: int) -> dict[str, torch.Tensor]:
    """This rank's rows (``rank::world_size``) of a global micro-batch, collated.

    Strided rows of a length-grouped batch have similar lengths on every rank. A rank left
    without rows gets the first row with no loss targets: every rank must run forward and
    backward for the gradient all-reduce, and a zero loss adds nothing to the sum.
    """
    rows = list(examples[rank::world_size])
    if rows:
        return collate(rows, pad_id)
    batch = collate(list(examples[:1]), pad_id)
    batch["labels"].fill_(IGNORE_INDEX)
    return batch
