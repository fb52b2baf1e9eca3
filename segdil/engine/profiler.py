"""`trainer.profile_steps=N` (or `debug=profile`): torch.profiler over N training steps.

The trace goes to `<run dir>/profile/` (open it in TensorBoard's profiler plugin or in
chrome://tracing / Perfetto), and the operators that took the most time are logged as a table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

log = logging.getLogger(__name__)

# Steps skipped, then run without recording, before the recorded ones: the first steps start
# loader workers and pick kernels, which is not what a profile is for.
WAIT_STEPS, WARMUP_STEPS = 1, 1


@contextmanager
def step_profiler(run_dir: Path, steps: int, device: torch.device) -> Iterator[Callable[[], None]]:
    """A `step()` callable to call after every training step: a no-op when `steps` is 0."""
    if steps <= 0:
        yield lambda: None
        return
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    out = run_dir / "profile"
    with profile(
        activities=activities,
        schedule=schedule(wait=WAIT_STEPS, warmup=WARMUP_STEPS, active=steps, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(out)),
    ) as profiler:
        yield profiler.step
    sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    log.info(
        "profile of %d steps (trace in %s):\n%s", steps, out, profiler.key_averages().table(sort_by=sort_key, row_limit=15)
    )
