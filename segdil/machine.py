"""What machine a run measured on: CPU model and class, native bf16, threads, torch, GPU.

Minutes and images/s mean little without the machine: a CPU without native bf16 runs bf16
autocast 8-30x slower than fp32, and an AVX-512 CPU convolves about 4x faster than an AVX2 one.
Every record (metrics.json, benchmark JSON, TensorBoard text) carries `machine_info()`.
"""

from __future__ import annotations

import os
import platform
from functools import cache

import torch

# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA) under which it no longer has bf16 instructions; the
# variable lets an AVX-512 machine run as an AVX2 one (with ATEN_CPU_CAPABILITY=avx2).
_ONEDNN_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


@cache
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX) and neither oneDNN nor ATen
    is capped below it; bf16 autocast is then about 2x fp32, and otherwise emulated and far slower."""
    hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    aten_capped = torch.backends.cpu.get_cpu_capability() not in ("AVX512",)
    return hardware and onednn_cap not in _ONEDNN_ISAS_WITHOUT_BF16 and not aten_capped


def cpu_class() -> str:
    """The class a CPU's speed figures belong to: AMX, AVX512-BF16, AVX512, AVX2 or DEFAULT (ATen's
    capability, refined by the bf16 instructions that matter for mixed precision)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512" and native_bf16():
        return "AMX" if torch.cpu._is_amx_tile_supported() else "AVX512-BF16"
    return capability


def machine_info() -> dict:
    """The machine facts every record carries (JSON-ready); `gpu` names the first CUDA device, if any."""
    return {
        "cpu_model": cpu_model(),
        "cpu_class": cpu_class(),
        "cpu_native_bf16": native_bf16(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def describe(info: dict) -> str:
    """One line naming the machine, e.g. 'AMD EPYC (AVX2, no native bf16), 2 torch threads'."""
    bf16 = "native bf16" if info["cpu_native_bf16"] else "no native bf16"
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return f"{info['cpu_model']} ({info['cpu_class']}, {bf16}), {info['torch_threads']} torch threads{gpu}"
