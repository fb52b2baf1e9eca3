"""Dilated ResNet and DRN backbones: output strides, shapes, dilations, torchvision compatibility."""

import pytest
import torch
import torchvision
from torch import nn

from segdil.errors import CheckpointError, ConfigError
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
        assert backbone.feature_info[name] == (channels, stride)
    assert features["out"] is features["layer4"]


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


@pytest.mark.parametrize("arch", ["drn_c", "drn_d"])
@pytest.mark.parametrize("depth", [18, 50])
def test_drn_shapes_and_features(arch: str, depth: int) -> None:
    width = 8
    backbone = build_backbone(depth=depth, output_stride=8, width=width, arch=arch).eval()
    with torch.no_grad():
        features = backbone(torch.randn(INPUT))
    expansion = 4 if depth >= 50 else 1
    assert list(features) == ["layer1", "layer2", "layer3", "layer4", "layer5", "layer6", "out"]
    assert features["layer1"].shape == (1, width * expansion, 16, 24)  # stride 4 without max pooling
    assert features["layer4"].shape == (1, width * 8 * expansion, 8, 12)
    assert features["out"].shape == (1, width * 8, 8, 12)  # degridding levels at 8 x width
    assert backbone.feature_info["out"] == (width * 8, 8)
    assert not any(isinstance(m, nn.MaxPool2d) for m in backbone.modules())


@pytest.mark.parametrize(("arch", "layers"), [("drn_c", 26), ("drn_d", 22)])
def test_drn_layer_counts_match_the_paper(arch: str, layers: int) -> None:
    """DRN-C-26 / DRN-D-22 count their spatial convolutions plus the 1x1 classifier (1x1
    projection shortcuts are not counted); the last two levels are dilated 2 then 1, no residual."""
    backbone = build_backbone(depth=18, width=8, arch=arch)
    spatial = [m for m in backbone.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert len(spatial) + 1 == layers
    for name, dilation in (("layer5", 2), ("layer6", 1)):
        convs = [m for m in getattr(backbone, name).modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(conv.dilation == (dilation, dilation) for conv in convs)
        assert not any(isinstance(m, torchvision.models.resnet.BasicBlock) for m in getattr(backbone, name).modules())


# Every convolution of DRN-C-26 and DRN-D-22 at output stride 8 as fyu/drn's `drn.py` builds it
# (`drn_c_26`, `drn_d_22`; levels 5 and 6 with new_level=False, so their first block is dilated
# in full), written out by hand: segdil name, fyu/drn name, kernel, stride, dilation.
RESNET18_STAGES = [
    ("layer1.0.conv1", "layer3.0.conv1", 3, 2, 1),
    ("layer1.0.conv2", "layer3.0.conv2", 3, 1, 1),
    ("layer1.0.downsample.0", "layer3.0.downsample.0", 1, 2, 1),
    ("layer1.1.conv1", "layer3.1.conv1", 3, 1, 1),
    ("layer1.1.conv2", "layer3.1.conv2", 3, 1, 1),
    ("layer2.0.conv1", "layer4.0.conv1", 3, 2, 1),
    ("layer2.0.conv2", "layer4.0.conv2", 3, 1, 1),
    ("layer2.0.downsample.0", "layer4.0.downsample.0", 1, 2, 1),
    ("layer2.1.conv1", "layer4.1.conv1", 3, 1, 1),
    ("layer2.1.conv2", "layer4.1.conv2", 3, 1, 1),
    ("layer3.0.conv1", "layer5.0.conv1", 3, 1, 2),
    ("layer3.0.conv2", "layer5.0.conv2", 3, 1, 2),
    ("layer3.0.downsample.0", "layer5.0.downsample.0", 1, 1, 1),
    ("layer3.1.conv1", "layer5.1.conv1", 3, 1, 2),
    ("layer3.1.conv2", "layer5.1.conv2", 3, 1, 2),
    ("layer4.0.conv1", "layer6.0.conv1", 3, 1, 4),
    ("layer4.0.conv2", "layer6.0.conv2", 3, 1, 4),
    ("layer4.0.downsample.0", "layer6.0.downsample.0", 1, 1, 1),
    ("layer4.1.conv1", "layer6.1.conv1", 3, 1, 4),
    ("layer4.1.conv2", "layer6.1.conv2", 3, 1, 4),
]
DRN_CONVS = {
    "drn_c": [
        ("stem.conv.0", "conv1", 7, 1, 1),
        ("stem.block1.conv1", "layer1.0.conv1", 3, 1, 1),
        ("stem.block1.conv2", "layer1.0.conv2", 3, 1, 1),
        ("stem.block2.conv1", "layer2.0.conv1", 3, 2, 1),
        ("stem.block2.conv2", "layer2.0.conv2", 3, 1, 1),
        ("stem.block2.downsample.0", "layer2.0.downsample.0", 1, 2, 1),
        *RESNET18_STAGES,
        ("layer5.0.0", "layer7.0.conv1", 3, 1, 2),
        ("layer5.1.0", "layer7.0.conv2", 3, 1, 2),
        ("layer6.0.0", "layer8.0.conv1", 3, 1, 1),
        ("layer6.1.0", "layer8.0.conv2", 3, 1, 1),
    ],
    "drn_d": [
        ("stem.conv.0", "layer0.0", 7, 1, 1),
        ("stem.block1.0", "layer1.0", 3, 1, 1),
        ("stem.block2.0", "layer2.0", 3, 2, 1),
        *RESNET18_STAGES,
        ("layer5.0.0", "layer7.0", 3, 1, 2),
        ("layer6.0.0", "layer8.0", 3, 1, 1),
    ],
}


@pytest.mark.parametrize("arch", sorted(DRN_CONVS))
def test_drn_convolutions_match_the_reference_table(arch: str) -> None:
    backbone = build_backbone(depth=18, output_stride=8, width=8, arch=arch)
    ours = [
        (name, conv.kernel_size[0], conv.stride[0], conv.dilation[0], conv.padding[0])
        for name, conv in backbone.named_modules()
        if isinstance(conv, nn.Conv2d)
    ]
    # Padding keeps the size: (kernel - 1) / 2 x dilation, as in fyu/drn.
    expected = [(name, k, s, d, (k - 1) // 2 * d) for name, _, k, s, d in DRN_CONVS[arch]]
    assert ours == expected


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_keeps_torchvisions_first_dilated_conv(depth: int) -> None:
    """arch=resnet: the first 3x3 conv of a dilated stage keeps the previous dilation, as
    torchvision's replace_stride_with_dilation does (compared with torchvision's ResNet-50)."""
    backbone = build_backbone(depth=depth, output_stride=8, width=8)
    first = "conv1" if depth == 18 else "conv2"
    assert getattr(backbone.layer3[0], first).dilation == (1, 1)
    assert getattr(backbone.layer4[0], first).dilation == (2, 2)
    if depth == 50:
        reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
        for name, conv in reference.named_modules():
            if isinstance(conv, nn.Conv2d):
                ours = backbone.get_submodule(name)
                assert (ours.stride, ours.dilation, ours.padding) == (conv.stride, conv.dilation, conv.padding), name


def test_drn_degridding_levels_have_no_shortcut() -> None:
    """Zeroing the last BN of layer6 silences the output: nothing bypasses the degridding levels."""
    backbone = build_backbone(depth=18, width=8, arch="drn_c").eval()
    nn.init.zeros_(backbone.layer6[-1][1].weight)
    nn.init.zeros_(backbone.layer6[-1][1].bias)
    with torch.no_grad():
        assert backbone(torch.randn(INPUT))["out"].abs().max() == 0


def test_loads_torchvision_state_dict(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone(depth=18, output_stride=8, weights=str(path))
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name]), name


def test_torchvision_weights_fill_the_resnet_part_of_a_drn(tmp_path, caplog) -> None:
    """DRN keeps torchvision's names for the ResNet stages: everything loads there except the
    first block of layer1, whose input is DRN's 32-channel stem; the rest is reported."""
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    with caplog.at_level("INFO", logger="segdil.models.weights"):
        backbone = build_backbone(depth=18, arch="drn_c", weights=str(path))
    reference_state = reference.state_dict()
    assert torch.equal(backbone.layer4[1].conv2.weight, reference_state["layer4.1.conv2.weight"])
    assert torch.equal(backbone.layer1[1].conv1.weight, reference_state["layer1.1.conv1.weight"])
    assert backbone.layer1[0].conv1.weight.shape != reference_state["layer1.0.conv1.weight"].shape
    report = caplog.text
    assert "other shape in the file, left as initialised (1): layer1.0.conv1.weight" in report
    assert "stem.conv.* (6)" in report and "layer6.0.* (6)" in report  # not in the file
    assert "fc.weight" in report and "conv1.weight" in report  # in the file, ignored


def test_bad_arch_and_width() -> None:
    with pytest.raises(ConfigError, match="model.backbone.arch='drn_x'"):
        build_backbone(arch="drn_x")
    with pytest.raises(ConfigError, match="model.backbone.width=10"):
        build_backbone(arch="drn_c", width=10)


def test_truncated_front_end() -> None:
    backbone = build_backbone(depth=10, output_stride=8, width=16, num_stages=2).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 64))
    assert list(features) == ["layer1", "layer2", "out"]
    assert features["out"].shape == (1, 32, 8, 8) and backbone.feature_info["out"].channels == 32
    assert not hasattr(backbone, "layer3")
    with pytest.raises(Exception, match="num_stages=5"):
        build_backbone(num_stages=5)
    with pytest.raises(Exception, match="num_stages=2"):
        build_backbone(arch="drn_c", num_stages=2)


# --- torchvision weight names: the hub cache, seeded by the test (no network) ------------------


def seed_hub_cache(torch_home, monkeypatch, factory, weights) -> dict[str, torch.Tensor]:
    """Write a random `factory` state dict where torchvision's weights API looks for `weights`
    ($TORCH_HOME/hub/checkpoints/<the URL's file name>), and forbid any download."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    state = factory(weights=None).state_dict()
    cache = torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(state, cache / weights.url.rsplit("/", 1)[-1])
    return state


def _no_network(url: str, *args, **kwargs) -> None:
    import urllib.error

    raise urllib.error.URLError(f"no network in tests ({url})")


@pytest.mark.parametrize(
    ("depth", "name", "factory", "weights"),
    [
        (18, "IMAGENET1K_V1", torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
        (50, "DEFAULT", torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
        (50, "IMAGENET1K_V1", torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    ],
)
def test_weight_names_load_from_the_torch_hub_cache(tmp_path, monkeypatch, depth, name, factory, weights) -> None:
    state = seed_hub_cache(tmp_path, monkeypatch, factory, weights)
    backbone = build_backbone(depth=depth, output_stride=8, weights=name)
    for key, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_drn_takes_what_matches_from_a_weight_name(tmp_path, monkeypatch) -> None:
    state = seed_hub_cache(tmp_path, monkeypatch, torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    backbone = build_backbone(depth=18, arch="drn_d", weights="IMAGENET1K_V1")
    assert torch.equal(backbone.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_weight_name_offline_and_uncached_is_one_line_naming_the_file_and_place(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(ConfigError) as error:
        build_backbone(depth=34, weights="IMAGENET1K_V1")
    message = str(error.value)
    expected_file = tmp_path / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    assert "\n" not in message and f"put the file from https://download.pytorch.org/models/resnet34-b627a593.pth at {expected_file}" in message


def test_bad_weight_names_and_depths_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"IMAGENET1K_V2: not a weight name of torchvision's ResNet18_Weights; expected one of \['IMAGENET1K_V1', 'DEFAULT'\]"):
        build_backbone(depth=18, weights="IMAGENET1K_V2")
    with pytest.raises(ConfigError, match="torchvision has no ResNet10_Weights; its ImageNet ResNets have depths 18, 34, 50 and 101"):
        build_backbone(depth=10, weights="DEFAULT")
    with pytest.raises(CheckpointError, match=r"model.backbone.weights=.*missing.pth: no such file"):
        build_backbone(depth=18, weights=str(tmp_path / "missing.pth"))
