"""model.head.dropout of the DeepLabv3 and DeepLabv3+ heads (torchvision's ASPP): 0.5 by default, any rate by choice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segdil.errors import ConfigError
from segdil.models.contract import FeatureInfo
from segdil.models.heads import DeepLabV3PlusHead, deeplabv3_head

INFO = {"out": FeatureInfo(channels=16, stride=8), "layer1": FeatureInfo(channels=8, stride=4)}


def dropouts(head: nn.Module) -> list[float]:
    return [module.p for module in head.modules() if isinstance(module, nn.Dropout)]


def test_default_is_torchvisions_single_dropout_of_half() -> None:
    assert dropouts(deeplabv3_head(INFO, 3)) == dropouts(DeepLabV3PlusHead(INFO, 3)) == [0.5]
    assert dropouts(DeepLabV3PlusHead(INFO, 3, dropout=0.1)) == [0.1]


@pytest.mark.parametrize("rate", [0.0, 0.1])
def test_the_rate_is_the_one_chosen_and_acts_in_training(rate: float) -> None:
    torch.manual_seed(0)
    head = deeplabv3_head(INFO, 3, dropout=rate).train()
    assert dropouts(head) == [rate]
    features = {"out": torch.randn(2, 16, 12, 12)}
    first, second = head(features), head(features)
    # BatchNorm in training mode is deterministic; only dropout can make two passes differ.
    assert torch.equal(first, second) == (rate == 0.0)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_a_bad_rate_is_one_line(rate: float) -> None:
    with pytest.raises(ConfigError, match=rf"^model.head.dropout={rate}: expected a probability in \[0, 1\)$"):
        deeplabv3_head(INFO, 3, dropout=rate)
