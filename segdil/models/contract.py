"""What a Segmentor asks of a backbone, stated once.

A backbone is any nn.Module that maps images (N x 3 x H x W) to an ordered dict of named features
and says, in `feature_info`, the channels and stride of each; `out` is the last, the one heads and
the context module read. Its factory takes `output_stride` (8, 16 or 32 for the dilated ResNets):
that is how the dilation is set, and how eval.py runs a checkpoint at another stride (the model is
rebuilt with the same weights). Adding a backbone takes one module and one config
(`model.backbone._target_`); tests/test_backbone_contract.py plugs in a toy one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol, runtime_checkable

import torch


class FeatureInfo(NamedTuple):
    """Channels and stride (input pixels per feature pixel) of one named backbone output."""

    channels: int
    stride: int


@runtime_checkable
class Backbone(Protocol):
    """The backbone contract (see the module docstring)."""

    feature_info: Mapping[str, FeatureInfo]  # every output in order, "out" included
    output_stride: int  # the stride of "out"
    aux_feature: str | None  # the feature an auxiliary head reads (ResNets: layer3), None if none suits

    def __call__(self, images: torch.Tensor) -> Mapping[str, torch.Tensor]: ...
