"""Multi-process training through torchrun: process group set-up and the few collectives used.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op, so the
same code path serves one process and many (on one node or several).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from segdil.errors import ConfigError

log = logging.getLogger(__name__)

# How long a collective waits for the other processes before it fails (seconds). A process that
# died or hangs makes the others raise after this long instead of waiting forever (torch's own
# default is 30 min for gloo, 10 for nccl). It must exceed the longest stretch one rank works
# alone while the others wait: rank 0's pre-flight data check, its validation panels, a
# checkpoint save. Override with SEGDIL_DIST_TIMEOUT_S=SECONDS.
TIMEOUT_ENV = "SEGDIL_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_rank() -> int:
    """This process's global rank as torchrun set it (0 without torchrun), before any process group."""
    return int(os.environ.get("RANK", 0))


def dist_timeout() -> timedelta:
    """The collective timeout: SEGDIL_DIST_TIMEOUT_S seconds, or DEFAULT_TIMEOUT_S."""
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds > 0 (default {DEFAULT_TIMEOUT_S:g})")
    return timedelta(seconds=seconds)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when started by torchrun (gloo on CPU, nccl on CUDA, one GPU per
    local rank), with `dist_timeout()` so that a lost process stops the others instead of hanging
    them. A 1-process launch joins too, so that it exercises the same backend as a large one."""
    if not launched_by_torchrun():
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=dist_timeout())
        log.info("process group: %s, rank %d of %d, local rank %d", backend, info.rank, info.world_size, info.local_rank)
    return info


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each process drives the GPU of its local rank; on the CPU all share the device."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes in place (no-op on one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


@contextmanager
def process_group_closed_at_exit() -> Iterator[None]:
    """Destroy the process group however the block ends, an error included. A group left for
    the interpreter's shutdown can abort the process ("terminate called without an active
    exception", exit -6 from gloo's threads) instead of letting it exit with the error's status."""
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
