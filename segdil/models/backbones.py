"""Dilated ResNet backbones (output stride 8, 16 or 32) built from torchvision's residual blocks,
plain (torchvision's ResNet with strides replaced by dilation) or with the degridding changes of
Dilated Residual Networks (DRN-C, DRN-D).

torchvision's own ResNet cannot dilate BasicBlock (resnet18/34) and has no width multiplier,
so the stage layout is assembled here from torchvision's `BasicBlock` / `Bottleneck`. Module
names follow torchvision's ResNet exactly, so its ImageNet state dicts load unchanged.

DRN (Yu, Koltun, Funkhouser, CVPR 2017) removes two sources of gridding artefacts: the stem's
max pooling (replaced by convolutions at stride 1 and 2: residual blocks in DRN-C, plain
convolutions in DRN-D) and the last dilated layers (followed by two levels of decreasing
dilation, 2 then 1, without residual connections). Stage widths and block counts are the
paper's: DRN-C-26 and DRN-D-22 are built on ResNet-18's stages, C-42 / D-38 on ResNet-34's.
The four ResNet stages keep torchvision's names (`layer1` .. `layer4`); the new parts are
`stem` and `layer5`, `layer6`.

Where the first block of a dilated stage starts dilating differs between the two references,
and both are kept: torchvision (`replace_stride_with_dilation`) gives that block's first 3x3
conv the previous stage's dilation, DRN (fyu/drn `drn.py`, `new_level=False` for its levels 5
and 6) gives it the stage's full dilation. fyu's DRN-A, a third convention (the whole first
block undilated), is not built here.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import Conv2dNormActivation

from segdil.errors import ConfigError
from segdil.loading import read_weights_file
from segdil.models.contract import FeatureInfo
from segdil.models.weights import is_weight_name, load_matching, torchvision_resnet_state

# Blocks per stage, from He et al. 2016 (Table 1); 10 is the common reduced variant.
STAGE_BLOCKS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}

# Stride of the four stages for each output stride; a stage that keeps stride 1 dilates instead.
STAGE_STRIDES: dict[int, tuple[int, int, int, int]] = {
    32: (1, 2, 2, 2),
    16: (1, 2, 2, 1),
    8: (1, 2, 1, 1),
}

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")

# resnet: torchvision's stem (7x7 conv at stride 2, max pooling). drn_c / drn_d: DRN's stems and
# degridding layers. The DRN stem ends at stride 2, so `layer1` downsamples (stride 4 after it).
ARCHS = ("resnet", "drn_c", "drn_d")

# Dilations of the degridding levels that follow `layer4` in DRN-C / DRN-D (the paper's levels 7, 8).
DEGRID_DILATIONS = (2, 1)


def _set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    """Dilate a 3x3 convolution in place, padding so that the spatial size is kept."""
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation, dilation)


def _three_by_three_convs(block: nn.Module) -> list[nn.Conv2d]:
    if isinstance(block, BasicBlock):
        return [block.conv1, block.conv2]
    return [block.conv2]


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """torchvision's projection shortcut (1x1 conv + BN), needed when shape or width changes."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def _drn_stem(arch: str, width: int) -> nn.Sequential:
    """DRN's levels 1-2 at `width / 4` and `width / 2` channels (16 and 32 at width 64), no pooling:
    a 7x7 conv at stride 1, then residual blocks (DRN-C) or plain 3x3 convs (DRN-D), the second
    at stride 2."""
    quarter, half = width // 4, width // 2
    if arch == "drn_c":
        second = BasicBlock(quarter, quarter)
        third = BasicBlock(quarter, half, stride=2, downsample=_downsample(quarter, half, 2))
    else:
        second = Conv2dNormActivation(quarter, quarter, 3)
        third = Conv2dNormActivation(quarter, half, 3, stride=2)
    return nn.Sequential(
        OrderedDict(conv=Conv2dNormActivation(3, quarter, 7), block1=second, block2=third)
    )


def _degrid_level(arch: str, in_channels: int, channels: int, dilation: int) -> nn.Sequential:
    """One DRN degridding level: conv-BN-ReLU without a residual connection, twice in DRN-C
    (a residual block with its shortcut removed), once in DRN-D."""
    convs = 2 if arch == "drn_c" else 1
    return nn.Sequential(
        *(
            Conv2dNormActivation(in_channels if index == 0 else channels, channels, 3, dilation=dilation)
            for index in range(convs)
        )
    )


class DilatedResNet(nn.Module):
    """ResNet whose last stages trade stride for dilation (optionally with DRN's degridding); a
    `segdil.models.contract.Backbone`.

    `forward` returns an ordered dict of the stage outputs (`layer1` .. `layer4`, then `layer5`,
    `layer6` for DRN) plus `out`, the last of them, so that heads pick features by name.
    `feature_info` gives the channels and stride of each. `num_stages` < 4 (ResNet only) cuts
    the network after that stage: a shallow front end with a small receptive field, which is
    what shows the context module's worth on the built-in dataset.
    """

    def __init__(
        self, depth: int = 18, output_stride: int = 8, width: int = 64, arch: str = "resnet", num_stages: int = 4
    ) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ConfigError(f"model.backbone.depth={depth}: expected one of {sorted(STAGE_BLOCKS)}")
        if output_stride not in STAGE_STRIDES:
            raise ConfigError(
                f"model.backbone.output_stride={output_stride}: expected one of {sorted(STAGE_STRIDES)}"
            )
        if arch not in ARCHS:
            raise ConfigError(f"model.backbone.arch={arch!r}: expected one of {list(ARCHS)}")
        if not 1 <= num_stages <= len(STAGE_NAMES) or (num_stages < len(STAGE_NAMES) and arch != "resnet"):
            raise ConfigError(f"model.backbone.num_stages={num_stages}: expected 1 to 4 (4 for DRN)")
        if arch != "resnet" and width % 4:
            raise ConfigError(f"model.backbone.width={width}: DRN stems need a multiple of 4 (width / 4 channels)")
        block, blocks_per_stage = STAGE_BLOCKS[depth]
        self.depth, self.output_stride, self.width, self.arch = depth, output_stride, width, arch

        stage_strides = list(STAGE_STRIDES[output_stride])
        if arch == "resnet":
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.stem_names: tuple[str, ...] = ("conv1", "bn1", "relu", "maxpool")
            in_channels, stride = width, 4
        else:
            self.stem = _drn_stem(arch, width)
            self.stem_names = ("stem",)
            in_channels, stride = width // 2, 2
            stage_strides[0] = 2

        self.feature_info: dict[str, FeatureInfo] = {}
        dilation = 1
        self.stage_names: tuple[str, ...] = STAGE_NAMES[:num_stages]
        for index, (name, stage_stride, num_blocks) in enumerate(zip(self.stage_names, stage_strides, blocks_per_stage)):
            planes = width * 2**index
            # A stage that would have downsampled (every stage but the first) dilates instead.
            stage_dilation = dilation * 2 if (stage_stride == 1 and index > 0) else dilation
            first_dilation = dilation if arch == "resnet" else stage_dilation
            stage = self._make_stage(block, in_channels, planes, num_blocks, stage_stride, first_dilation, stage_dilation)
            self.add_module(name, stage)
            in_channels, dilation, stride = planes * block.expansion, stage_dilation, stride * stage_stride
            self.feature_info[name] = FeatureInfo(in_channels, stride)

        if arch != "resnet":
            # DRN keeps 512 channels (8 x width) in the degridding levels, also after Bottleneck stages.
            for name, level_dilation in zip(("layer5", "layer6"), DEGRID_DILATIONS):
                self.add_module(name, _degrid_level(arch, in_channels, width * 8, level_dilation))
                in_channels = width * 8
                self.feature_info[name] = FeatureInfo(in_channels, stride)
            self.stage_names += ("layer5", "layer6")
        self.feature_info["out"] = self.feature_info[self.stage_names[-1]]
        # The auxiliary head reads the stage before the last ResNet stage, as in PSPNet and torchvision.
        self.aux_feature = "layer3" if "layer3" in self.feature_info else None

        self._init_weights()

    @staticmethod
    def _make_stage(
        block: type[nn.Module],
        in_channels: int,
        planes: int,
        num_blocks: int,
        stride: int,
        first_dilation: int,
        dilation: int,
    ) -> nn.Sequential:
        """One residual stage whose 3x3 convs are dilated by `dilation`, except the stage's very
        first 3x3 conv, dilated by `first_dilation` (the previous dilation for torchvision's
        convention, `dilation` itself for DRN's)."""
        out_channels = planes * block.expansion
        blocks = [block(in_channels, planes, stride, _downsample(in_channels, out_channels, stride))]
        blocks += [block(out_channels, planes) for _ in range(1, num_blocks)]
        for block_index, residual_block in enumerate(blocks):
            convs = _three_by_three_convs(residual_block)
            for conv_index, conv in enumerate(convs):
                first = block_index == 0 and conv_index == 0
                _set_dilation(conv, first_dilation if first else dilation)
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Zero-init the last BN of each residual branch (Goyal et al. 2017): each block starts
        # as the identity, which trains deeper nets from scratch more smoothly.
        for module in self.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        for name in self.stem_names:
            x = getattr(self, name)(x)
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name in self.stage_names:
            x = getattr(self, name)(x)
            features[name] = x
        features["out"] = x
        return features

    def load_torchvision_weights(self, weights: str | Path) -> None:
        """Load ImageNet weights in torchvision's ResNet format: a state-dict file, or one of
        torchvision's weight names (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT) for this depth.

        Tensors are matched by name and shape; the rest (torchvision's `fc`, DRN's stem and
        degridding levels, the first DRN block whose input width differs) is reported in one
        block and left as initialised.
        """
        if is_weight_name(str(weights)):
            state = torchvision_resnet_state(str(weights), self.depth)
        else:
            expected = "expected a torchvision-format state-dict file or one of torchvision's weight names, e.g. IMAGENET1K_V1"
            state = read_weights_file(weights, "model.backbone.weights", expected)
        load_matching(self, state, f"model.backbone.weights={weights}")


def build_backbone(
    depth: int = 18,
    output_stride: int = 8,
    width: int = 64,
    arch: str = "resnet",
    weights: str | None = None,
    num_stages: int = 4,
) -> DilatedResNet:
    """A dilated ResNet, optionally initialised from ImageNet weights: a torchvision-format state
    dict file or a torchvision weight name (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT)."""
    backbone = DilatedResNet(depth=depth, output_stride=output_stride, width=width, arch=arch, num_stages=num_stages)
    if weights:
        backbone.load_torchvision_weights(weights)
    return backbone
