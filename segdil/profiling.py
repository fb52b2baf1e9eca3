"""What the benchmarks measure besides time: FLOPs, the machine's arithmetic ceilings, peak memory.

Written here because no library reports achieved-versus-possible arithmetic for a training step:
torch.utils.flop_counter counts the FLOPs, the ceilings are timed on the same process and device.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS count (VmHWM) of this process, so that each benchmark row
    gets its own peak; False where the kernel does not offer it (the peak then only grows)."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident memory of this process since the last reset (or since it started), MiB."""
    if STATUS.exists():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def count_flops(work: Callable[[], object]) -> int:
    """FLOPs of one call of `work` (a training step counts forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def best_rate(work: Callable[[], object], flops: float, repeats: int, device: torch.device) -> float:
    """GFLOP/s of the fastest of `repeats` timed calls after one warm-up call."""
    work()
    return flops / min(timed(work, device) for _ in range(repeats)) / 1e9


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times are true (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CONV_SHAPES = ((64, 56), (128, 56), (256, 28), (512, 28))  # (channels, size) of ResNet stages at 224


@torch.no_grad()
def conv_ceiling(device: torch.device, dtype: torch.dtype, repeats: int = 3) -> float:
    """GFLOP/s of the fastest 3x3 convolution among ResNet-stage shapes (batch 8) in either
    memory format. FLOPs are those of direct convolution, as the flop counter reports them."""
    rates = []
    for channels, size in CONV_SHAPES:
        for memory_format in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(8, channels, size, size, device=device, dtype=dtype).to(memory_format=memory_format)
            weight = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype).to(memory_format=memory_format)
            flops = 2 * 8 * channels * channels * 9 * size * size
            rates.append(best_rate(lambda x=x, weight=weight: F.conv2d(x, weight, padding=1), flops, repeats, device))
    return max(rates)


@torch.no_grad()
def matmul_ceiling(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a square matrix product."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return best_rate(lambda: a @ b, 2 * size**3, repeats, device)


def ceilings(device: torch.device, dtypes: dict[str, torch.dtype]) -> dict[str, dict[str, float]]:
    """{name: {"conv": GFLOP/s, "matmul": GFLOP/s}} for each named dtype, measured now."""
    return {
        name: {"conv": conv_ceiling(device, dtype), "matmul": matmul_ceiling(device, dtype)}
        for name, dtype in dtypes.items()
    }


def timed(work: Callable[[], object], device: torch.device) -> float:
    """Seconds taken by one call of `work`."""
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start
