"""The multi-scale context aggregation module of Yu & Koltun (ICLR 2016, "Multi-Scale Context
Aggregation by Dilated Convolutions"): a stack of 3x3 convolutions with growing dilation, each
followed by ReLU, then a 1x1 convolution; identity-initialised so that training starts from the
front end's own prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segdil.errors import ConfigError

PAPER_DILATIONS = (1, 1, 2, 4, 8, 16, 1)


def large_width_multipliers(num_layers: int) -> list[int]:
    """Channel multipliers of the paper's `large` module, generalised to any depth.

    For the paper's 7 layers this gives 2, 2, 4, 8, 16, 32, 32 (Table 1): start at 2, double
    from the third layer on, and keep the width of the layer before for the last 3x3 layer.
    """
    if num_layers < 2:
        return [2] * num_layers
    multipliers = [2] + [2**index for index in range(1, num_layers - 1)]
    return multipliers + [multipliers[-1]]


def identity_init_(conv: nn.Conv2d, num_classes: int, noise_std: float = 0.0) -> None:
    """The paper's identity initialisation (its Eq. 4 and 5), for equal or changing widths.

    Input channel a and output channel b are joined at the centre tap with weight C / c_out
    when they carry the same class (floor(a C / c_in) == floor(b C / c_out)); everything else
    is zero, plus Gaussian noise of `noise_std` times C / c_out when asked. With equal widths
    and no noise this is exactly the identity.
    """
    c_out, c_in, height, width = conv.weight.shape
    scale = num_classes / c_out
    with torch.no_grad():
        weight = torch.zeros_like(conv.weight)
        if noise_std > 0:
            weight.normal_(0.0, noise_std * scale)
        in_class = torch.arange(c_in) * num_classes // c_in
        out_class = torch.arange(c_out) * num_classes // c_out
        same_class = out_class[:, None] == in_class[None, :]
        weight[:, :, height // 2, width // 2] += same_class.to(weight.dtype) * scale
        conv.weight.copy_(weight)
        if conv.bias is not None:
            conv.bias.zero_()


class ContextModule(nn.Module):
    """Dilated 3x3 convolutions over C channels, then a 1x1; output has the input's size.

    The paper places it on the class scores (C = number of classes); the Segmentor can also
    place it on backbone features (C = feature channels, `model.context_placement=features`),
    whose values are non-negative after the backbone's ReLU, so the identity start is exact.

    `variant="basic"` keeps C channels throughout and is exactly the identity at
    initialisation for non-negative input (the ReLUs clip negative scores). `variant="large"`
    widens to 2C ... 32C and starts near the identity (the paper's rule plus small noise).

    `residual=True` (not in the paper) adds the input back, `scores + layers(scores)`, with the
    last 1x1 zero-initialised: the module is then exactly the identity at init for scores of
    any sign, and a class whose scores turn negative everywhere keeps its gradient instead of
    dying behind the ReLUs.
    """

    def __init__(
        self,
        channels: int,
        dilations: Sequence[int] = PAPER_DILATIONS,
        variant: str = "basic",
        noise_std: float = 1e-3,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if variant == "basic":
            widths = [channels] * len(dilations)
            noise_std = 0.0
        elif variant == "large":
            widths = [channels * m for m in large_width_multipliers(len(dilations))]
        else:
            raise ConfigError(f"model.context.variant={variant!r}: expected 'basic' or 'large'")
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ConfigError(f"model.context.dilations={list(dilations)}: expected positive integers")

        layers: list[nn.Module] = []
        in_channels = channels
        for dilation, out_channels in zip(dilations, widths):
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=int(dilation), dilation=int(dilation)),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        layers.append(nn.Conv2d(in_channels, channels, 1))
        self.layers = nn.Sequential(*layers)
        self.dilations = [int(d) for d in dilations]
        self.variant, self.residual = variant, residual
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                identity_init_(layer, channels, noise_std)
        if residual:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        out = self.layers(scores)
        return scores + out if self.residual else out
