"""Soup step: K LoRA adapters trained with different seeds, averaged into one adapter artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from zenml import log_metadata, step

from sentibridge.errors import SentibridgeError
from sentibridge.model.soup import soup_adapters
from steps.scratch import output_folder

#: Keys of a member's train summary that hold for the whole soup (the members share them).
SHARED_KEYS = ("base_model", "precision", "device", "world_size", "train_records")
#: Per-member values kept under "soup"; a soup has no loss of its own until it is evaluated.
MEMBER_KEYS = ("train_loss", "eval_loss", "steps", "resumed_from", "run_key")


def soup_summary(train_summaries: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """The soup's train summary: the shared keys of the first member, each member's losses, sums.

    ``steps`` and ``train_seconds`` are summed: they measure what the soup cost to train.
    """
    if not train_summaries or len(train_summaries) != len(seeds):
        raise SentibridgeError(f"a soup needs one train summary per seed: {len(train_summaries)} summaries, {len(seeds)} seeds")
    first = train_summaries[0]
    summary: dict[str, Any] = {key: first[key] for key in SHARED_KEYS if key in first}
    summary["steps"] = sum(s.get("steps") or 0 for s in train_summaries)
    summary["train_seconds"] = sum(s.get("train_seconds") or 0.0 for s in train_summaries)
    # Tokens per second over all members: their tokens over their seconds.
    tokens = sum((s.get("tokens_per_s") or 0.0) * (s.get("train_seconds") or 0.0) for s in train_summaries)
    summary["tokens_per_s"] = tokens / summary["train_seconds"] if summary["train_seconds"] else 0.0
    summary["resumed_from"] = max((s.get("resumed_from") or 0) for s in train_summaries)
    summary["soup"] = {
        "seeds": list(seeds),
        "members": [{"seed": seed, **{k: s.get(k) for k in MEMBER_KEYS}} for seed, s in zip(seeds, train_summaries)],
    }
    return summary


@step(enable_cache=False)
def soup(
    lora_adapters: list[Path],
    train_summaries: list[dict],
    seeds: list[int],
) -> tuple[Annotated[Path, "lora_adapter"], Annotated[dict, "train_summary"]]:
    """Average the seeds' LoRA adapters into one rank-K*r adapter (``sentibridge.model.soup``).

    The outputs are named like train's, so evaluation, the gate and registration take a soup
    wherever they take a single adapter.
    """
    if len(lora_adapters) != len(seeds):
        raise SentibridgeError(f"a soup needs one adapter per seed: {len(lora_adapters)} adapters, {len(seeds)} seeds")
    summary = soup_summary(train_summaries, seeds)
    # The inputs arrive as temporary folders: soup.json names the members by seed instead.
    names = [f"seed{seed}" for seed in seeds]
    adapter = soup_adapters([Path(a) for a in lora_adapters], output_folder("lora_adapter") / "adapter", names)
    log_metadata(metadata=_flat_metadata(summary), artifact_name="lora_adapter", infer_artifact=True)
    return adapter, summary


def _flat_metadata(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Summary without None values (ZenML metadata has no null), as train logs it."""
    return {k: v for k, v in summary.items() if v is not None}
