"""Segmentation heads: turn backbone features into class scores at the feature resolution."""

from __future__ import annotations

from torch import nn
from torchvision.models.segmentation.fcn import FCNHead as TorchvisionFCNHead


def fcn_head(in_channels: int, num_classes: int, hidden_conv: bool = True) -> nn.Module:
    """FCN head: torchvision's (3x3 conv to in/4, BN, ReLU, dropout 0.1, 1x1) or a bare 1x1."""
    if hidden_conv:
        return TorchvisionFCNHead(in_channels, num_classes)
    return nn.Conv2d(in_channels, num_classes, kernel_size=1)
