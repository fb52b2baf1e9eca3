"""Dilated ResNet backbones (output stride 8, 16 or 32) built from torchvision's residual blocks.

torchvision's own ResNet cannot dilate BasicBlock (resnet18/34) and has no width multiplier,
so the stage layout is assembled here from torchvision's `BasicBlock` / `Bottleneck`. Module
names follow torchvision's ResNet exactly, so its ImageNet state dicts load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from segdil.errors import ConfigError

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


def _set_dilation(conv: nn.Conv2d, dilation: int) -> None:
    """Dilate a 3x3 convolution in place, padding so that the spatial size is kept."""
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation, dilation)


def _three_by_three_convs(block: nn.Module) -> list[nn.Conv2d]:
    if isinstance(block, BasicBlock):
        return [block.conv1, block.conv2]
    return [block.conv2]


class DilatedResNet(nn.Module):
    """ResNet whose last stages trade stride for dilation.

    `forward` returns an ordered dict of the stage outputs (`layer1` .. `layer4`) so that heads
    needing low-level or intermediate features can pick them by name; the last entry is the
    output. `num_stages` < 4 truncates the network (a shallow front end with a small receptive
    field, as used to show what the context module adds).
    """

    def __init__(self, depth: int = 18, output_stride: int = 8, width: int = 64, num_stages: int = 4) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ConfigError(f"model.backbone.depth={depth}: expected one of {sorted(STAGE_BLOCKS)}")
        if output_stride not in STAGE_STRIDES:
            raise ConfigError(
                f"model.backbone.output_stride={output_stride}: expected one of {sorted(STAGE_STRIDES)}"
            )
        if not 1 <= num_stages <= len(STAGE_NAMES):
            raise ConfigError(f"model.backbone.num_stages={num_stages}: expected 1 to 4")
        block, blocks_per_stage = STAGE_BLOCKS[depth]
        self.depth, self.output_stride, self.width = depth, output_stride, width

        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.out_channels: dict[str, int] = {}
        in_channels, dilation = width, 1
        self.stage_names = STAGE_NAMES[:num_stages]
        for index, (name, stride, num_blocks) in enumerate(
            zip(self.stage_names, STAGE_STRIDES[output_stride], blocks_per_stage)
        ):
            planes = width * 2**index
            # A stage that would have downsampled (every stage but the first) dilates instead.
            stage_dilation = dilation * 2 if (stride == 1 and index > 0) else dilation
            stage = self._make_stage(block, in_channels, planes, num_blocks, stride, dilation, stage_dilation)
            self.add_module(name, stage)
            in_channels = planes * block.expansion
            dilation = stage_dilation
            self.out_channels[name] = in_channels

        self._init_weights()

    @staticmethod
    def _make_stage(
        block: type[nn.Module],
        in_channels: int,
        planes: int,
        num_blocks: int,
        stride: int,
        previous_dilation: int,
        dilation: int,
    ) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [block(in_channels, planes, stride, downsample)]
        blocks += [block(out_channels, planes) for _ in range(1, num_blocks)]
        # As in DRN / torchvision: the first block of a newly dilated stage still uses the
        # previous dilation on its first 3x3 conv, which avoids an abrupt jump in spacing.
        for block_index, residual_block in enumerate(blocks):
            convs = _three_by_three_convs(residual_block)
            for conv_index, conv in enumerate(convs):
                first = block_index == 0 and conv_index == 0
                _set_dilation(conv, previous_dilation if first else dilation)
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
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name in self.stage_names:
            x = getattr(self, name)(x)
            features[name] = x
        return features

    @property
    def output_channels(self) -> int:
        """Channels of the last stage, the one heads read."""
        return self.out_channels[self.stage_names[-1]]

    def load_torchvision_weights(self, path: str | Path) -> None:
        """Load an ImageNet state dict in torchvision's ResNet format; the `fc` layer is dropped."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"model.backbone.weights={path}: file not found")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        result = self.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ConfigError(
                f"{path}: not a ResNet-{self.depth} (width {self.width}) state dict; "
                f"missing keys: {result.missing_keys[:5]}, unexpected keys: {result.unexpected_keys[:5]}"
            )


def build_backbone(
    depth: int = 18, output_stride: int = 8, width: int = 64, weights: str | None = None, num_stages: int = 4
) -> DilatedResNet:
    """A dilated ResNet, optionally initialised from a local torchvision-format state dict."""
    backbone = DilatedResNet(depth=depth, output_stride=output_stride, width=width, num_stages=num_stages)
    if weights:
        backbone.load_torchvision_weights(weights)
    return backbone
