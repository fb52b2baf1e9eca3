"""Poly schedule with linear warmup against its closed form."""

import pytest
import torch

from segdil.engine.schedule import poly_with_warmup


def _lrs(max_iters: int, warmup: int, factor: float, power: float) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = poly_with_warmup(optimizer, max_iters, warmup, factor, power)
    lrs = []
    for _ in range(max_iters):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_then_poly() -> None:
    max_iters, warmup, factor, power = 100, 10, 0.1, 0.9
    lrs = _lrs(max_iters, warmup, factor, power)
    for it in range(warmup):
        assert lrs[it] == pytest.approx(0.1 * (factor + (1 - factor) * it / warmup))
    for it in range(warmup, max_iters):
        assert lrs[it] == pytest.approx(0.1 * (1 - (it - warmup) / (max_iters - warmup)) ** power)


def test_no_warmup() -> None:
    lrs = _lrs(50, 0, 0.1, 1.0)
    assert lrs[0] == pytest.approx(0.1) and lrs[25] == pytest.approx(0.05)
