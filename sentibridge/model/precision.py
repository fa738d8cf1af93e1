"""Device and numeric precision: which device to use, and whether bf16 runs natively there."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch

Precision = Literal["bf16", "fp32"]


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX); emulated bf16 is slow."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(precision: str, device: str | torch.device) -> Precision:
    """Turn ``auto``/``bf16``/``fp32`` into what this device will actually run.

    ``auto`` means bf16 on CUDA cards and CPUs with native bf16, else fp32. An explicit
    ``bf16`` on hardware without it falls back to fp32 rather than crawling through emulation.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    device = torch.device(device)
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def base_dtype(precision: Precision) -> torch.dtype:
    """dtype for frozen base weights: bf16 spares autocast re-casting them on every step."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(precision: Precision, device: str | torch.device):
    """bf16 autocast context for ``device``, or a no-op for fp32."""
    if precision != "bf16":
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
