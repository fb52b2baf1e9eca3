"""Learning-rate schedules, composed from torch.optim.lr_scheduler's own pieces."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LinearLR, LRScheduler, PolynomialLR, SequentialLR


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
