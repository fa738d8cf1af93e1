"""Data-parallel LoRA training in N worker processes, and the workers' entry point.

The step hands the workers plain files in a job folder: the records as JSONL and the base
model path, config sections and output folder as JSON. ``torchrun`` (plain data parallelism) or
``accelerate launch`` (with ``train.accelerate_config``: FSDP, DeepSpeed) starts
``python -m sentibridge.model.launch <job.json>`` once per rank. Only the main rank writes: the
checkpoints and adapter, its per-step metrics as JSONL and the result as JSON, which the caller
reads back, so tracking stays in the caller's process and one MLflow run gets one set of metrics.

On CPU, ``torchrun`` with ``Accelerator(cpu=True)`` gives gloo workers that really sync
gradients; ``accelerate launch --cpu --num_processes 2`` would start a single process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from sentibridge.config import LoraConfig, ModelConfig, TrainConfig
from sentibridge.errors import ConfigError
from sentibridge.model.training import OnLog, TrainJob, TrainResult

JOB = "job.json"
RESULT = "result.json"
METRICS = "metrics.jsonl"
LOG = "workers.log"


class WorkerFailed(RuntimeError):
    """A training worker died or raised; the message names the rank and why."""


def needs_workers(train_cfg: TrainConfig) -> bool:
    """Whether training runs in launched workers rather than in the caller's process."""
    return train_cfg.processes > 1 or train_cfg.accelerate_config is not None


def write_job(folder: Path, job: TrainJob) -> Path:
    """Write ``job`` for the workers into ``folder``; clears what an earlier attempt left. Returns job.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (*folder.glob("error-rank*.txt"), folder / RESULT, folder / METRICS):
        stale.unlink(missing_ok=True)
    for name, records in (("train.jsonl", job.train_records), ("val.jsonl", job.val_records)):
        with (folder / name).open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    spec = {
        "base": job.base,
        "model": job.model.model_dump(mode="json"),
        "lora": job.lora.model_dump(mode="json"),
        "train": job.train.model_dump(mode="json"),
        "output_dir": str(Path(job.output_dir).resolve()),
        "device": job.device,
    }
    (folder / JOB).write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return folder / JOB


def read_job(job_file: Path) -> TrainJob:
    """The ``TrainJob`` that ``write_job`` wrote (records read back from the JSONL files)."""
    folder = Path(job_file).parent
    spec = json.loads(Path(job_file).read_text(encoding="utf-8"))
    return TrainJob(
        base=spec["base"],
        model=ModelConfig(**spec["model"]),
        lora=LoraConfig(**spec["lora"]),
        train=TrainConfig(**spec["train"]),
        train_records=_read_jsonl(folder / "train.jsonl"),
        val_records=_read_jsonl(folder / "val.jsonl"),
        output_dir=Path(spec["output_dir"]),
        device=spec["device"],
    )


def launch_command(job_file: Path, processes: int, accelerate_config: str | None, device: str) -> list[str]:
    """The launcher's command line: ``accelerate launch`` with a config file, else ``torchrun``."""
    worker = ["-m", "sentibridge.model.launch", str(job_file)]
    if accelerate_config is not None:
        return [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", accelerate_config,
            "--num_processes", str(processes),
            "--main_process_port", str(_free_port()),
            *worker,
        ]  # fmt: skip
    # --standalone: a local rendezvous on a free port; no restarts, a dead worker ends the run.
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone", "--nproc_per_node", str(processes), "--max_restarts", "0",
        *worker,
    ]  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_launch(train_cfg: TrainConfig, device: str) -> None:
    if train_cfg.accelerate_config is not None and not Path(train_cfg.accelerate_config).is_file():
        raise ConfigError(f"train.accelerate_config: no such file: {train_cfg.accelerate_config}")
    if device == "cuda" and train_cfg.processes > torch.cuda.device_count():
        raise ConfigError(
            f"train.processes={train_cfg.processes} but only {torch.cuda.device_count()} GPU(s): one process per GPU"
        )


def _worker_env(processes: int, device: str) -> dict[str, str]:
    env = dict(os.environ)
    if device == "cpu":
        # One share of the cores per worker (unless set): N workers with all cores each oversubscribe the CPU.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    return env


def _failure(folder: Path, returncode: int) -> str:
    """One line: which rank failed first and why.

    A rank killed by a signal (the OOM killer, a user) is the cause: the others then fail on
    broken collectives, with error files of their own, or get the launcher's SIGTERM. Otherwise
    the earliest error file names the rank that raised first.
    """
    log = (folder / LOG).read_text(encoding="utf-8", errors="replace") if (folder / LOG).is_file() else ""
    # torchrun's failure summary: "rank: 1 (local_rank: 1)" then "exitcode: -9" for each failed rank.
    for rank, code in re.findall(r"rank\s*:\s*(\d+)\s*\(local_rank.*?exitcode\s*:\s*(-?\d+)", log, re.S):
        if int(code) < 0 and -int(code) != signal.SIGTERM:
            return f"training worker rank {rank} died: killed by {signal.Signals(-int(code)).name} (log: {folder / LOG})"
    errors = sorted(folder.glob("error-rank*.txt"), key=lambda p: p.stat().st_mtime)
    if errors:
        rank = errors[0].stem.removeprefix("error-rank")
        return f"training worker rank {rank} failed: {errors[0].read_text(encoding='utf-8').strip()}"
    return f"training workers failed with exit code {returncode} (log: {folder / LOG})"


def run_workers(
    job_file: Path, processes: int, accelerate_config: str | None, device: str, timeout: float | None = None
) -> tuple[TrainResult, list[tuple[int, dict[str, float]]]]:
    """Run the workers for ``job_file`` to the end; the main rank's result and per-step metrics.

    The launcher runs in its own process group, which is killed whole on a timeout or when the
    caller is interrupted, so no worker outlives the call. A failed worker raises ``WorkerFailed``.
    """
    folder = Path(job_file).parent
    command = launch_command(job_file, processes, accelerate_config, device)
    with (folder / LOG).open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=_worker_env(processes, device), start_new_session=True
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise WorkerFailed(f"training workers timed out after {timeout:.0f} s (log: {folder / LOG})") from None
        except BaseException:
            _kill_group(proc)
            raise
    if returncode != 0 or not (folder / RESULT).is_file():
        raise WorkerFailed(_failure(folder, returncode))
    result = json.loads((folder / RESULT).read_text(encoding="utf-8"))
    result["adapter_dir"] = Path(result["adapter_dir"])
    metrics = []
    if (folder / METRICS).is_file():
        for line in (folder / METRICS).read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            metrics.append((int(entry["step"]), entry["metrics"]))
    return TrainResult(**result), metrics


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the launcher's process group (the launcher and every worker), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def train_in_workers(job: TrainJob, on_log: OnLog | None = None, timeout: float | None = None) -> TrainResult:
    """``train_lora`` in ``job.train.processes`` launched workers; the job folder is ``job.output_dir/job``.

    ``on_log`` gets the main rank's per-step metrics once the workers are done, in order.
    ``job.device``: ``cpu`` or ``cuda`` (default: CUDA when available).
    """
    device = job.device or ("cuda" if torch.cuda.is_available() else "cpu")
    job = replace(job, device=device)
    _check_launch(job.train, device)
    job_file = write_job(Path(job.output_dir) / "job", job)
    result, metrics = run_workers(job_file, job.train.processes, job.train.accelerate_config, device, timeout)
    for step, values in metrics:
        if on_log is not None:
            on_log(step, values)
    return result


# --- the worker ------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def worker(job_file: Path) -> None:
    """One rank: load the base model, train, and (main rank) write metrics and result."""
    from sentibridge.model.base import load_causal_lm, load_tokenizer
    from sentibridge.model.precision import base_dtype, resolve_precision
    from sentibridge.model.training import make_accelerator, train_lora

    folder = Path(job_file).parent
    job = read_job(job_file)
    accelerator = make_accelerator(job.train, job.device)
    precision = resolve_precision(job.train.precision, accelerator.device)
    tokenizer = load_tokenizer(job.base, job.model)
    # Loaded on the CPU: train_lora places it (or FSDP/DeepSpeed shard it) on this rank's device.
    model = load_causal_lm(job.base, job.model, "cpu", base_dtype(precision))

    metrics = (folder / METRICS).open("a", encoding="utf-8") if accelerator.is_main_process else None

    def on_log(step: int, values: dict[str, float]) -> None:
        assert metrics is not None  # train_lora calls on_log on the main rank only
        metrics.write(json.dumps({"step": step, "metrics": values}) + "\n")
        metrics.flush()

    result = train_lora(model, tokenizer, job, on_log=on_log, accelerator=accelerator)
    if metrics is not None:
        metrics.close()
        payload = {**asdict(result), "adapter_dir": str(result.adapter_dir)}
        tmp = folder / f".{RESULT}.tmp"
        tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        tmp.rename(folder / RESULT)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of each rank: ``python -m sentibridge.model.launch <job.json>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m sentibridge.model.launch <job.json>", file=sys.stderr)
        return 2
    job_file = Path(args[0])
    rank = os.environ.get("RANK", "0")
    try:
        worker(job_file)
    except BaseException as exc:
        # The caller reports the first rank that failed, by its error file's time.
        first = (str(exc).strip().splitlines() or [""])[0]
        line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        (job_file.parent / f"error-rank{rank}.txt").write_text(line + "\n", encoding="utf-8")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
