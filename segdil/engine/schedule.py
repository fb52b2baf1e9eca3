"""Learning-rate schedules, composed from torch.optim.lr_scheduler's own pieces."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, LRScheduler, PolynomialLR, SequentialLR, StepLR

from segdil.errors import ConfigError


def poly_with_warmup(
    optimizer: Optimizer,
    max_iters: int,
    warmup_iters: int = 0,
    warmup_factor: float = 0.1,
    power: float = 0.9,
) -> LRScheduler:
    """Linear warmup from `warmup_factor` x lr over `warmup_iters`, then poly decay to 0 at
    `max_iters` (the DeepLab schedule). Stepped once per iteration."""
    warmup_iters = min(warmup_iters, max_iters - 1)
    poly = PolynomialLR(optimizer, total_iters=max_iters - warmup_iters, power=power)
    if warmup_iters <= 0:
        return poly
    warmup = LinearLR(optimizer, start_factor=warmup_factor, total_iters=warmup_iters)
    return SequentialLR(optimizer, [warmup, poly], milestones=[warmup_iters])


def step_decay(optimizer: Optimizer, max_iters: int, every: float = 0.4, gamma: float = 0.1) -> LRScheduler:
    """lr times `gamma` after every `every` x `max_iters` iterations: the `step` policy of Caffe
    and fyu/drn (there in epochs: 100 of 250 is every=0.4), kept proportional so that a shorter
    run keeps the same shape. Stepped once per iteration."""
    if not 0.0 < every <= 1.0:
        raise ConfigError(f"schedule.every={every}: expected a fraction of trainer.max_iters in (0, 1]")
    return StepLR(optimizer, step_size=max(1, round(every * max_iters)), gamma=gamma)
