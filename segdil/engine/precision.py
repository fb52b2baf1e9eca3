"""Mixed precision from `trainer.precision` / `eval.precision`: auto, 32 (off), bf16 (CPU or CUDA),
16 (CUDA, with a GradScaler). `auto` picks what is fastest and safe on this machine."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import ContextManager, NamedTuple

import torch

from segdil.errors import ConfigError
from segdil.machine import native_bf16

log = logging.getLogger(__name__)

DTYPES = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
CHOICES = ("auto", *DTYPES)


class Precision(NamedTuple):
    """The precision a run uses (`32`, `bf16` or `16`), what was asked, and why."""

    name: str
    requested: str
    reason: str


def choose_precision(requested: str | int, device: torch.device, key: str = "trainer.precision") -> Precision:
    """Resolve `auto` for `device` and check an explicit choice; warn when bf16 is forced on a CPU
    that only emulates it.

    auto on a CPU: bf16 where the CPU computes it natively (AVX512-BF16, AMX), where it is about 2x
    fp32; else fp32, because emulated bf16 is 8-30x slower than fp32. auto on CUDA: bf16 where the GPU
    supports it (Ampere and newer), else fp16 with loss scaling: the tensor cores of older GPUs run
    fp16, and the GradScaler guards its narrow range.
    """
    asked = str(requested)
    if asked not in CHOICES:
        raise ConfigError(f"{key}={requested}: expected auto, 32, bf16 or 16")
    cuda = device.type == "cuda"
    if asked == "16" and not cuda:
        raise ConfigError(f"{key}=16 needs CUDA (float16 autocast); on the CPU use auto, bf16 or 32")
    if asked == "auto":
        if cuda:
            if torch.cuda.is_bf16_supported():
                return Precision("bf16", asked, "auto: this GPU computes bf16")
            return Precision("16", asked, "auto: this GPU has no bf16, so fp16 with loss scaling")
        if native_bf16():
            return Precision("bf16", asked, "auto: this CPU computes bf16 natively (about 2x fp32)")
        return Precision("32", asked, "auto: this CPU has no native bf16 (no AVX512-BF16 or AMX), where bf16 is emulated and several times slower than fp32")
    if asked == "bf16" and not cuda and not native_bf16():
        log.warning(
            "%s=bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX): bf16 is emulated here and "
            "runs several times (8-30x) slower than fp32; %s=auto would choose fp32",
            key,
            key,
        )
        return Precision("bf16", asked, "asked for; emulated on this CPU, several times slower than fp32")
    return Precision(asked, asked, "asked for")


def autocast_factory(precision: str, device: torch.device) -> Callable[[], ContextManager]:
    """A zero-argument function returning the autocast context for each forward pass, for a
    resolved precision (`Precision.name`)."""
    dtype = DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling is needed for float16 only; a disabled scaler is a transparent pass-through."""
    return torch.amp.GradScaler(device.type, enabled=precision == "16")
