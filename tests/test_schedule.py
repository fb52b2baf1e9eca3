"""Poly schedule with linear warmup, and step decay, against their closed forms."""

import pytest
import torch

from segdil.engine.schedule import poly_with_warmup, step_decay
from segdil.errors import ConfigError


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


def test_step_decay_divides_by_ten_every_fraction_of_the_run() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = step_decay(optimizer, max_iters=250, every=0.4)
    lrs = []
    for _ in range(250):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[99] == pytest.approx(0.01) and lrs[100] == pytest.approx(0.001)
    assert lrs[199] == pytest.approx(0.001) and lrs[200] == pytest.approx(0.0001) and lrs[249] == pytest.approx(0.0001)


def test_step_decay_refuses_a_fraction_outside_the_run() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    with pytest.raises(ConfigError, match=r"schedule.every=1.5: expected a fraction"):
        step_decay(optimizer, max_iters=10, every=1.5)
