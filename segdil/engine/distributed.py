"""Multi-process training through torchrun or SLURM: process group set-up and the few collectives used.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK. Without them, a task that SLURM's srun started
(one process per task) takes its rank from SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID, and the
rendezvous address from MASTER_ADDR / MASTER_PORT when given, else the first host of
SLURM_JOB_NODELIST and port 29500. Without either, everything here is a no-op, so the same code
path serves one process and many (on one node or several).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
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


# The rendezvous port of a SLURM launch without MASTER_PORT (torch's customary default).
SLURM_DEFAULT_PORT = "29500"


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return "RANK" in environ and "WORLD_SIZE" in environ


def first_host(nodelist: str) -> str:
    """The first host name of a SLURM node list in its compressed form: `gpu[07-09,12],cpu3` ->
    `gpu07`, `rack[1-2]-n[01-04]` -> `rack1-n01`. Written here because `scontrol show hostnames`
    exists only on the cluster and submitit's parser is an optional extra."""
    first = re.split(r",(?![^\[]*\])", nodelist.strip(), maxsplit=1)[0]
    host = re.sub(r"\[([^\]\-,]+)[^\]]*\]", r"\1", first)
    if not host or "[" in host or "]" in host:
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: expected SLURM's node list, e.g. node[01-04],gpu7")
    return host


def slurm_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """torchrun's variables for a task of an srun step with several tasks, from SLURM's own
    (RANK = SLURM_PROCID, WORLD_SIZE = SLURM_NTASKS, LOCAL_RANK = SLURM_LOCALID; MASTER_ADDR and
    MASTER_PORT as given, else the node list's first host and SLURM_DEFAULT_PORT); {} when
    torchrun's are set, outside SLURM, or for a single task (which trains alone, as plain python)."""
    if launched_by_torchrun(environ) or "SLURM_PROCID" not in environ or int(environ.get("SLURM_NTASKS", 1)) < 2:
        return {}
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST", "")
    if not environ.get("MASTER_ADDR") and not nodelist:
        raise ConfigError("SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST is: cannot find rank 0's host")
    return {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": environ["SLURM_NTASKS"],
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": environ.get("MASTER_ADDR") or first_host(nodelist),
        "MASTER_PORT": environ.get("MASTER_PORT") or SLURM_DEFAULT_PORT,
    }


def launch_rank() -> int:
    """This process's global rank as torchrun or SLURM set it (0 without either), before any process group."""
    return int(os.environ.get("RANK") or slurm_environment(os.environ).get("RANK", 0))


def launch_run_id() -> str | None:
    """One name shared by all processes of a launch, for their common run directory: torchrun's
    run id, or the SLURM job and step of a multi-task srun; None for a single process."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id != "none":
        return f"torchrun_{run_id}"
    if slurm_environment(os.environ):
        return f"slurm_{os.environ.get('SLURM_JOB_ID', 'job')}_{os.environ.get('SLURM_STEP_ID', '0')}"
    return None


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
    os.environ.update(slurm_environment(os.environ))  # init_process_group reads them from the environment
    if not launched_by_torchrun():
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(local_gpu(info))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=dist_timeout())
        log.info("process group: %s, rank %d of %d, local rank %d", backend, info.rank, info.world_size, info.local_rank)
    return info


def local_gpu(info: DistInfo) -> int:
    """The GPU index of this process: its local rank, modulo the GPUs it sees when it sees fewer
    (SLURM's --gpus-per-task shows each task only its own, as cuda:0)."""
    visible = torch.cuda.device_count()
    return info.local_rank % visible if 0 < visible <= info.local_rank else info.local_rank


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each process drives the GPU of its local rank; on the CPU all share the device."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", local_gpu(info))
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
