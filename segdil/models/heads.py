"""Segmentation heads: backbone features (a dict by name) -> class scores at a feature's resolution.

Every head factory takes the backbone's `feature_info` (channels and stride per feature name)
and the number of classes, so that a head picks its inputs by name: `out` (the last feature)
for FCN and DeepLabv3, `out` and `layer1` (stride 4) for DeepLabv3+, `layer3` for the
auxiliary head. torchvision's modules are used wherever they fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead as TorchvisionFCNHead
from torchvision.ops import Conv2dNormActivation

from segdil.errors import ConfigError
from segdil.models.contract import FeatureInfo

# DeepLabv3 (Chen et al. 2017) states its ASPP rates at output stride 16; they double at 8.
RATES_OUTPUT_STRIDE = 16


def _feature(feature_info: Mapping[str, FeatureInfo], name: str, key: str) -> FeatureInfo:
    if name not in feature_info:
        raise ConfigError(f"{key}={name!r}: the backbone has no such feature; expected one of {list(feature_info)}")
    return feature_info[name]


class FeatureHead(nn.Sequential):
    """Layers applied in turn to one named backbone feature. `torchvision_model` names the
    torchvision segmentation model whose classifier these layers are (`FCN`, `DeepLabV3`), so
    that its published weights can be found by name (`model.init_from`)."""

    def __init__(self, feature: str, *layers: nn.Module, torchvision_model: str | None = None) -> None:
        super().__init__(*layers)
        self.feature = feature
        self.torchvision_model = torchvision_model

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return super().forward(features[self.feature])


def fcn_head(
    feature_info: Mapping[str, FeatureInfo], num_classes: int, hidden_conv: bool = True, feature: str = "out"
) -> FeatureHead:
    """FCN head: torchvision's (3x3 conv to in/4, BN, ReLU, dropout 0.1, 1x1) or a bare 1x1."""
    channels = _feature(feature_info, feature, "model.head.feature").channels
    if hidden_conv:
        return FeatureHead(feature, *TorchvisionFCNHead(channels, num_classes).children(), torchvision_model="FCN")
    return FeatureHead(feature, nn.Conv2d(channels, num_classes, kernel_size=1))


def atrous_rates(rates: Sequence[int], output_stride: int) -> list[int]:
    """ASPP rates given at output stride 16, scaled to the feature's stride (6, 12, 18 -> 12, 24, 36 at 8)."""
    scaled = [int(rate) * RATES_OUTPUT_STRIDE / output_stride for rate in rates]
    if not rates or any(rate < 1 or rate != int(rate) for rate in scaled):
        raise ConfigError(
            f"model.head.rates={list(rates)}: expected positive rates (at output stride 16) that scale to "
            f"whole numbers at this backbone's output stride {output_stride}"
        )
    return [int(rate) for rate in scaled]


def deeplabv3_head(
    feature_info: Mapping[str, FeatureInfo],
    num_classes: int,
    rates: Sequence[int] = (6, 12, 18),
    feature: str = "out",
    dropout: float = 0.5,
) -> FeatureHead:
    """DeepLabv3 as torchvision builds it: ASPP (1x1, three 3x3 at `rates`, image pooling,
    1x1 projection to 256, dropout), then a 3x3 conv-BN-ReLU and the 1x1 classifier. `dropout`
    is torchvision's 0.5 after the projection (mmsegmentation's ASPPHead has 0.1, elsewhere:
    before its classifier)."""
    info = _feature(feature_info, feature, "model.head.feature")
    aspp, *layers = DeepLabHead(info.channels, num_classes, atrous_rates(rates, info.stride)).children()
    return FeatureHead(feature, with_dropout(aspp, dropout), *layers, torchvision_model="DeepLabV3")


def with_dropout(aspp: ASPP, dropout: float) -> ASPP:
    """torchvision's ASPP with the dropout that ends its projection (0.5 there) set to `dropout`."""
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.head.dropout={dropout}: expected a probability in [0, 1)")
    aspp.project[-1].p = dropout
    return aspp


class DeepLabV3PlusHead(nn.Module):
    """DeepLabv3+ (Chen et al., ECCV 2018): torchvision's ASPP on the last feature, upsampled to
    the stride-4 feature, concatenated with that feature reduced to 48 channels by a 1x1 conv,
    then two 3x3 conv-BN-ReLU of 256 channels and the 1x1 classifier (output at stride 4).

    Written here because torchvision has no DeepLabv3+ decoder; the ASPP is torchvision's.
    """

    def __init__(
        self,
        feature_info: Mapping[str, FeatureInfo],
        num_classes: int,
        rates: Sequence[int] = (6, 12, 18),
        feature: str = "out",
        low_level: str = "layer1",
        low_level_channels: int = 48,
        channels: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        info = _feature(feature_info, feature, "model.head.feature")
        low = _feature(feature_info, low_level, "model.head.low_level")
        self.feature, self.low_level = feature, low_level
        self.aspp = with_dropout(ASPP(info.channels, atrous_rates(rates, info.stride), channels), dropout)
        self.reduce = Conv2dNormActivation(low.channels, low_level_channels, kernel_size=1)
        self.fuse = nn.Sequential(
            Conv2dNormActivation(channels + low_level_channels, channels, kernel_size=3),
            Conv2dNormActivation(channels, channels, kernel_size=3),
        )
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        low = self.reduce(features[self.low_level])
        context = F.interpolate(self.aspp(features[self.feature]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([context, low], dim=1)))
