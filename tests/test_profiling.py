"""segdil.profiling: FLOP counts against analytic values, per-row peak memory, ceilings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from segdil.profiling import ceilings, count_flops, peak_rss_mib, reset_peak_rss


def test_count_flops_of_a_linear_layer_forward_and_backward() -> None:
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=True)
    forward = 2 * 8 * 64 * 32
    assert count_flops(lambda: layer(x)) == forward
    # backward computes the input and the weight gradient: two more products of the same size
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * forward


def test_count_flops_of_a_dilated_convolution() -> None:
    conv = nn.Conv2d(4, 6, 3, padding=2, dilation=2, bias=False)
    x = torch.randn(2, 4, 10, 12)
    assert count_flops(lambda: conv(x)) == 2 * 2 * 6 * 10 * 12 * 4 * 9


def test_peak_rss_restarts_per_measurement() -> None:
    block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    high = peak_rss_mib()
    del block
    if not reset_peak_rss():
        pytest.skip("this kernel cannot reset the peak RSS (/proc/self/clear_refs)")
    assert peak_rss_mib() < high - 200


def test_ceilings_are_positive_rates() -> None:
    found = ceilings(torch.device("cpu"), {"fp32": torch.float32})
    assert set(found) == {"fp32"} and found["fp32"]["conv"] > 0 and found["fp32"]["matmul"] > 0
