"""Dilated ResNet: output strides, shapes, dilations and torchvision compatibility."""

import pytest
import torch
import torchvision

from segdil.models.backbones import STAGE_BLOCKS, build_backbone

INPUT = (1, 3, 64, 96)


@pytest.mark.parametrize("depth", sorted(STAGE_BLOCKS))
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_stride_and_shapes(depth: int, output_stride: int) -> None:
    width = 8
    backbone = build_backbone(depth=depth, output_stride=output_stride, width=width).eval()
    with torch.no_grad():
        features = backbone(torch.randn(INPUT))
    expansion = 4 if depth >= 50 else 1
    stage_strides = {"layer1": 4, "layer2": 8, "layer3": min(16, output_stride), "layer4": output_stride}
    for index, (name, stride) in enumerate(stage_strides.items()):
        channels = width * 2**index * expansion
        assert features[name].shape == (1, channels, INPUT[2] // stride, INPUT[3] // stride), name
        assert backbone.out_channels[name] == channels


@pytest.mark.parametrize(
    ("output_stride", "layer3", "layer4"), [(32, 1, 1), (16, 1, 2), (8, 2, 4)]
)
def test_dilations_replace_strides(output_stride: int, layer3: int, layer4: int) -> None:
    backbone = build_backbone(depth=18, output_stride=output_stride, width=8)
    # The last 3x3 conv of each stage carries the stage's dilation.
    assert backbone.layer3[-1].conv2.dilation == (layer3, layer3)
    assert backbone.layer4[-1].conv2.dilation == (layer4, layer4)
    assert backbone.layer4[-1].conv2.padding == (layer4, layer4)


@pytest.mark.parametrize(("depth", "factory"), [(18, torchvision.models.resnet18), (50, torchvision.models.resnet50)])
def test_parameters_and_keys_match_torchvision(depth: int, factory) -> None:
    """Full width, our backbone holds exactly torchvision's ResNet minus `fc`: same names and
    shapes, so ImageNet state dicts load unchanged (an independent parameter count)."""
    ours = build_backbone(depth=depth, output_stride=8).state_dict()
    reference = {k: v for k, v in factory(weights=None).state_dict().items() if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in reference.items()}


def test_loads_torchvision_state_dict(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone(depth=18, output_stride=8, weights=str(path))
    assert torch.equal(backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_truncated_front_end() -> None:
    backbone = build_backbone(depth=10, output_stride=8, width=16, num_stages=2).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 64))
    assert list(features) == ["layer1", "layer2"]
    assert features["layer2"].shape == (1, 32, 8, 8) and backbone.output_channels == 32
    assert not hasattr(backbone, "layer3")
    with pytest.raises(Exception, match="num_stages=5"):
        build_backbone(num_stages=5)
