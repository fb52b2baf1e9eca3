"""Mixed precision from `trainer.precision`: 32 (off), bf16 (CPU or CUDA), 16 (CUDA, with a GradScaler)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import ContextManager

import torch

from segdil.errors import ConfigError

DTYPES = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def autocast_factory(precision: str | int, device: torch.device) -> Callable[[], ContextManager]:
    """A zero-argument function returning the autocast context for each forward pass."""
    key = str(precision)
    if key not in DTYPES:
        raise ConfigError(f"trainer.precision={precision}: expected 32, bf16 or 16")
    dtype = DTYPES[key]
    if dtype is None:
        return contextlib.nullcontext
    if dtype is torch.float16 and device.type != "cuda":
        raise ConfigError("trainer.precision=16 needs CUDA (float16 autocast); on the CPU use bf16")
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str | int, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling is needed for float16 only; a disabled scaler is a transparent pass-through."""
    return torch.amp.GradScaler(device.type, enabled=str(precision) == "16")
