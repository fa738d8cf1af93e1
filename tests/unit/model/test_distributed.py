"""Data-parallel training in real worker processes (torchrun, gloo on CPU): no mocks.

A 2-process run must train the adapter a 1-process run trains with the same global batch,
keep both ranks' weights equal, name a killed worker, and resume exactly after the kill.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.config_loading import load_settings
from sentibridge.errors import ConfigError
from sentibridge.model.base import load_causal_lm, load_tokenizer
from sentibridge.model.launch import WorkerFailed, launch_command, train_in_workers
from sentibridge.model.batching import IGNORE_INDEX, encode_records, shard_batch
from sentibridge.model.checkpoints import latest_checkpoint
from sentibridge.model.training import TrainJob, train_lora
from tests.conftest import REPO
from tests.unit.model.test_training import records  # noqa: F401 - the same records fixture

pytestmark = pytest.mark.slow

#: Dropout off where 1 and 2 processes are compared: dropout masks depend on how rows are split.
LORA = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules="all-linear")
#: Seconds any launched run may take before the test fails instead of hanging.
TIMEOUT = 300


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_gemma_config, gemma_tokenizer) -> Path:
    """A tiny Gemma-3 saved as a model folder, the way workers load a base model."""
    from transformers import Gemma3ForCausalLM

    folder = tmp_path_factory.mktemp("tiny-gemma")
    torch.manual_seed(0)
    Gemma3ForCausalLM(tiny_gemma_config).save_pretrained(folder)
    gemma_tokenizer.save_pretrained(folder)
    return folder


def _cfg(**overrides) -> TrainConfig:
    base = dict(
        seed=3, max_steps=4, batch_size=3, gradient_accumulation_steps=2, learning_rate=5e-3, warmup_ratio=0.2,
        precision="fp32", eval_rows=4, checkpoint_every=0, processes=2,
    )
    return TrainConfig(**{**base, **overrides})


def _adapter(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(output_dir / "adapter" / "adapter_model.safetensors")


def _assert_same_adapter(a: Path, b: Path, atol: float) -> None:
    first, second = _adapter(a), _adapter(b)
    assert first.keys() == second.keys() and first
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=atol, msg=key)


def _in_process(model_dir: Path, records, cfg: TrainConfig, output_dir: Path):
    tokenizer = load_tokenizer(str(model_dir), ModelConfig())
    model = load_causal_lm(str(model_dir), ModelConfig())
    return train_lora(model, tokenizer, _job(model_dir, records, cfg, output_dir), progress=False)


def _job(model_dir, records, cfg: TrainConfig, output_dir: Path, lora: LoraConfig = LORA) -> TrainJob:
    return TrainJob(str(model_dir), ModelConfig(), lora, cfg, records, records, output_dir, "cpu")


def test_shard_batch_splits_rows_and_pads_an_empty_rank(records, gemma_tokenizer):
    examples = encode_records(records[:3], gemma_tokenizer)
    pad = gemma_tokenizer.pad_token_id
    first, second = (shard_batch(examples, rank, 2, pad) for rank in (0, 1))
    assert first["input_ids"].shape[0] == 2 and second["input_ids"].shape[0] == 1
    assert second["input_ids"][0, : len(examples[1].input_ids)].tolist() == examples[1].input_ids
    # Rank 2 of 4 gets no row of a 2-row batch: it still runs a forward, with no loss targets.
    empty = shard_batch(examples[:2], 2, 4, pad)
    assert empty["input_ids"].shape[0] == 1 and (empty["labels"] == IGNORE_INDEX).all()


def test_two_processes_train_the_one_process_adapter(tiny_model_dir, records, tmp_path):
    logged: list[tuple[int, dict]] = []
    two = train_in_workers(
        _job(tiny_model_dir, records, _cfg(), tmp_path / "two"), on_log=lambda step, m: logged.append((step, m)), timeout=TIMEOUT
    )
    one = _in_process(tiny_model_dir, records, _cfg(processes=1), tmp_path / "one")

    assert (two.world_size, one.world_size) == (2, 1)
    # Both ranks hold the same weights: their gradients were all-reduced, not trained alone.
    assert len(two.rank_checksums) == 2 and two.rank_checksums[0] == two.rank_checksums[1]
    # fp32 all-reduce sums in another order; Adam turns that into ~1e-5 on weights of ~0.1.
    _assert_same_adapter(tmp_path / "one", tmp_path / "two", atol=1e-4)
    trained_b = max(v.abs().max().item() for k, v in _adapter(tmp_path / "two").items() if "lora_B" in k)
    assert trained_b > 100 * 1e-4  # lora_B starts at zero: the tolerance is far below what training moved
    assert two.train_loss == pytest.approx(one.train_loss, rel=1e-4)
    assert two.eval_loss == pytest.approx(one.eval_loss, rel=1e-4)
    # One set of step metrics, from the main rank only, then the eval loss.
    assert [step for step, m in logged if "loss" in m] == [1, 2, 3, 4]
    assert logged[-1] == (4, {"eval_loss": two.eval_loss})


def _worker_pid(job_file: Path, rank: int) -> int | None:
    """The pid of the worker of ``rank`` for ``job_file``, read from /proc (its command line and RANK)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"sentibridge.model.launch" in cmdline and str(job_file).encode() in cmdline:
                if f"RANK={rank}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    return int(proc.name)
        except (OSError, ValueError):  # not a process, or one that just ended
            continue
    return None


def test_killed_worker_is_named_and_the_run_resumes_exactly(tiny_model_dir, records, tmp_path):
    # Dropout on: resuming must restore each rank's own random stream.
    lora = LORA.model_copy(update={"dropout": 0.1})
    cfg = _cfg(max_steps=30, checkpoint_every=2, batch_size=2)
    train_in_workers(_job(tiny_model_dir, records, cfg, tmp_path / "straight", lora), timeout=TIMEOUT)
    killed = _job(tiny_model_dir, records, cfg, tmp_path / "killed", lora)

    failure: list[BaseException] = []

    def interrupted() -> None:
        try:
            train_in_workers(killed, timeout=TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=interrupted)
    thread.start()
    job_file = tmp_path / "killed" / "job" / "job.json"
    deadline = time.monotonic() + TIMEOUT
    while latest_checkpoint(tmp_path / "killed") is None and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = _worker_pid(job_file, rank=1)
    assert pid is not None, "rank 1 ended before the test could kill it"
    os.kill(pid, signal.SIGKILL)
    thread.join(TIMEOUT)

    assert not thread.is_alive(), "the launcher hung after a worker died"
    assert len(failure) == 1 and isinstance(failure[0], WorkerFailed), failure
    message = str(failure[0])
    assert "rank 1" in message and "SIGKILL" in message and "\n" not in message
    checkpoint = latest_checkpoint(tmp_path / "killed")
    assert checkpoint is not None and int(checkpoint.name.split("-")[1]) < 30

    resumed = train_in_workers(killed, timeout=TIMEOUT)
    assert 2 <= resumed.resumed_from < 30 and resumed.world_size == 2
    _assert_same_adapter(tmp_path / "straight", tmp_path / "killed", atol=1e-6)


def test_launch_commands():
    job = Path("/runs/x/job/job.json")
    torchrun = launch_command(job, 2, None, "cpu")
    assert torchrun[1:3] == ["-m", "torch.distributed.run"]
    assert torchrun[torchrun.index("--nproc_per_node") + 1] == "2"
    assert torchrun[-3:] == ["-m", "sentibridge.model.launch", str(job)]
    accelerate = launch_command(job, 4, "configs/accelerate/fsdp_lora_8b.yaml", "cuda")
    assert accelerate[1:3] == ["-m", "accelerate.commands.launch"]
    assert accelerate[accelerate.index("--config_file") + 1] == "configs/accelerate/fsdp_lora_8b.yaml"
    assert accelerate[accelerate.index("--num_processes") + 1] == "4"


def test_processes_setting_and_a_missing_accelerate_config(records, tmp_path):
    assert load_settings().train.processes == 1
    assert load_settings(overrides=["train.processes=2"]).train.processes == 2
    with pytest.raises(ConfigError, match="train.processes"):
        load_settings(overrides=["train.processes=0"])
    cfg = _cfg(accelerate_config=str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="accelerate_config"):
        train_in_workers(_job("unused", records, cfg, tmp_path))


@pytest.mark.parametrize(
    ("name", "kind"), [("fsdp_lora_8b.yaml", "FSDP"), ("deepspeed_zero3_lora_8b.yaml", "DEEPSPEED")]
)
def test_big_model_accelerate_configs_parse(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "configs" / "accelerate" / name))
    assert config.distributed_type.name == kind and config.mixed_precision == "bf16"
    if kind == "FSDP":
        fsdp = config.fsdp_config
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
        assert fsdp["fsdp_cpu_ram_efficient_loading"] is True and fsdp["fsdp_use_orig_params"] is False
    else:
        deepspeed = config.deepspeed_config
        assert deepspeed["zero_stage"] == 3 and deepspeed["zero3_save_16bit_model"] is True
