"""Training checkpoints: ``Accelerator.save_state`` folders that keep the LoRA adapter, not the base.

A checkpoint holds what Accelerate saves (optimizer, scheduler, every rank's RNG states; under
FSDP and DeepSpeed their sharded model and optimizer states) plus the adapter and the step, so a
resumed run, sharded or not, continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

_STATE = "trainer_state.json"


@dataclass
class Progress:
    """Where a run stands: steps done, their losses, and the training time and tokens they cost.

    The time and tokens travel with the checkpoint so that a run resumed, even several times,
    reports what its whole training cost rather than its last leg's.
    """

    step: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0

    def advance(self, loss: float, tokens: int, seconds: float) -> None:
        """Count one more optimizer step."""
        self.step += 1
        self.losses.append(loss)
        self.tokens += tokens
        self.seconds += seconds


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The finished checkpoint with the highest step in ``output_dir``, if any."""
    found = []
    for path in Path(output_dir).glob("checkpoint-*"):
        suffix = path.name.split("-", 1)[1]
        if suffix.isdigit() and (path / _STATE).is_file():
            found.append((int(suffix), path))
    return max(found)[1] if found else None


def keep_latest_checkpoint(output_dir: Path) -> Path | None:
    """Delete every checkpoint in ``output_dir`` but the latest finished one, which is returned."""
    latest = latest_checkpoint(output_dir)
    for path in Path(output_dir).glob("*checkpoint-*"):  # older ones, and temp folders of killed saves
        if path != latest and path.is_dir():
            shutil.rmtree(path)
    return latest


def training_run_keys(train_summary: Mapping[str, Any]) -> list[str]:
    """The checkpoint folders (run keys) a train summary was trained in: its own, or a soup's members'."""
    members = (train_summary.get("soup") or {}).get("members") or [train_summary]
    return [member["run_key"] for member in members if member.get("run_key")]


def release_checkpoints(runs: Path, train_summary: Mapping[str, Any]) -> list[str]:
    """Delete the checkpoint folders of a model that is now registered; the run keys deleted.

    Until then they let a run cut off after training (in evaluation, say) restore its training
    at its end instead of repeating it. After, they would make an identical rerun "resume" at
    its end, and a finished run's adapter lives on as its artifact anyway.
    """
    released = []
    for key in training_run_keys(train_summary):
        if (Path(runs) / key).exists():
            shutil.rmtree(Path(runs) / key)
            released.append(key)
    return released


def keep_adapter_only(accelerator: Accelerator, peft_model: PeftModel) -> None:
    """Make ``save_state``/``load_state`` keep the LoRA weights alone where Accelerate handles the model.

    A replicated model would otherwise be saved whole (the frozen base too) at every checkpoint;
    the hooks swap it for the adapter, as safetensors. FSDP and DeepSpeed models are saved by
    their own (sharded) code paths and never reach these hooks.
    """

    def save(models: list, weights: list, output_dir: str) -> None:
        if weights:
            weights.pop()
            if accelerator.is_main_process:
                peft_model.save_pretrained(output_dir, state_dict=get_peft_model_state_dict(peft_model))

    def load(models: list, input_dir: str) -> None:
        if models:
            models.pop()
            set_peft_model_state_dict(peft_model, load_file(Path(input_dir) / "adapter_model.safetensors"))

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def save_checkpoint(accelerator: Accelerator, output_dir: Path, progress: Progress) -> Path:
    """``output_dir/checkpoint-<step>``: ``accelerator.save_state`` plus ``progress``; call on all ranks.

    Written to a temporary folder and renamed once every rank is done, so a run killed while
    saving never leaves a checkpoint that looks finished.
    """
    step = progress.step
    target, tmp = Path(output_dir) / f"checkpoint-{step}", Path(output_dir) / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():  # left by a run killed while saving
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every rank's states are in before the rename
    if accelerator.is_main_process:
        state = {"step": step, "losses": list(progress.losses), "seconds": progress.seconds, "tokens": progress.tokens}
        (tmp / _STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    accelerator.wait_for_everyone()
    return target


def load_checkpoint(accelerator: Accelerator, checkpoint: Path) -> Progress:
    """Restore a ``save_checkpoint`` folder into the prepared objects; returns its progress.

    Checkpoints from before time and tokens were recorded count them as 0.
    """
    accelerator.load_state(str(checkpoint))
    state = json.loads((checkpoint / _STATE).read_text(encoding="utf-8"))
    return Progress(int(state["step"]), list(state["losses"]), float(state.get("seconds", 0.0)), int(state.get("tokens", 0)))
