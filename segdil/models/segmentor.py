"""The Segmentor composes backbone -> head -> (context module) and returns logits at input size."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from segdil.models.backbones import DilatedResNet


class Segmentor(nn.Module):
    """Backbone features -> class scores -> optional context aggregation -> bilinear upsampling."""

    def __init__(self, backbone: DilatedResNet, head: nn.Module, context: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.context = context

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        scores = self.head(next(reversed(features.values())))
        if self.context is not None:
            scores = self.context(scores)
        return F.interpolate(scores, size=images.shape[-2:], mode="bilinear", align_corners=False)


def build_segmentor(
    num_classes: int,
    backbone: DilatedResNet,
    head: Callable[[int, int], nn.Module],
    context: Callable[[int], nn.Module] | None = None,
    name: str = "",
) -> Segmentor:
    """Assemble a Segmentor; `head` and `context` are factories (Hydra `_partial_` configs)
    that receive the sizes only known here: the backbone's channels and the number of classes."""
    head_module = head(backbone.output_channels, num_classes)
    context_module = context(num_classes) if context is not None else None
    segmentor = Segmentor(backbone, head_module, context_module)
    segmentor.name = name
    return segmentor
