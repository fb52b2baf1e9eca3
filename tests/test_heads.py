"""Heads: output shapes at output stride 8 and 16, ASPP rates, bad values."""

from functools import lru_cache

import pytest
import torch

from segdil.errors import ConfigError
from segdil.models.backbones import build_backbone
from segdil.models.heads import DeepLabV3PlusHead, atrous_rates, deeplabv3_head, fcn_head

NUM_CLASSES = 5
SIZE = 64


@lru_cache(maxsize=None)
def _features(output_stride: int, depth: int = 18):
    """Feature info and features of one batch of 2, shared by the heads (they do not modify them)."""
    backbone = build_backbone(depth=depth, output_stride=output_stride, width=8).eval()
    with torch.no_grad():
        return backbone.feature_info, backbone(torch.randn(2, 3, SIZE, SIZE))


HEADS = {
    "fcn": (lambda info: fcn_head(info, NUM_CLASSES), "out"),
    "fcn_bare": (lambda info: fcn_head(info, NUM_CLASSES, hidden_conv=False), "out"),
    "aux_fcn_layer3": (lambda info: fcn_head(info, NUM_CLASSES, feature="layer3"), "layer3"),
    "deeplabv3": (lambda info: deeplabv3_head(info, NUM_CLASSES), "out"),
    "deeplabv3plus": (lambda info: DeepLabV3PlusHead(info, NUM_CLASSES), "layer1"),
}


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("head_name", sorted(HEADS))
def test_head_output_shapes(head_name: str, depth: int, output_stride: int) -> None:
    info, features = _features(output_stride, depth)
    factory, resolution_of = HEADS[head_name]
    head = factory(info)
    for mode in (head.train, head.eval):  # batch of 2: BN after ASPP's global pooling trains too
        mode()
        scores = head(features)
        stride = info[resolution_of].stride
        assert scores.shape == (2, NUM_CLASSES, SIZE // stride, SIZE // stride)


def _aspp_dilations(head) -> list[int]:
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    return [conv.dilation[0] for conv in convs]


@pytest.mark.parametrize(("output_stride", "rates"), [(8, [12, 24, 36]), (16, [6, 12, 18])])
def test_aspp_rates_scale_with_output_stride(output_stride: int, rates: list[int]) -> None:
    info = build_backbone(depth=18, output_stride=output_stride, width=8).feature_info
    # ASPP's three 3x3 branches come first; then the head's (or decoder's) undilated 3x3 convs.
    assert _aspp_dilations(deeplabv3_head(info, 3))[:3] == rates
    assert _aspp_dilations(DeepLabV3PlusHead(info, 3)) == rates + [1, 1]


def test_bad_rates_and_features() -> None:
    assert atrous_rates([6, 12, 18], 32) == [3, 6, 9]
    with pytest.raises(ConfigError, match=r"model.head.rates=\[5\]"):
        atrous_rates([5], 32)
    info = build_backbone(depth=18, width=8).feature_info
    with pytest.raises(ConfigError, match="model.head.low_level='layer9'"):
        DeepLabV3PlusHead(info, 3, low_level="layer9")
    with pytest.raises(ConfigError, match="model.head.feature='stem'"):
        fcn_head(info, 3, feature="stem")
