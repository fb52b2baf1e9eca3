"""Pictures for people: class masks in colour, images back from normalisation, confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segdil.data.base import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def colorize(mask: torch.Tensor, palette: Sequence[Sequence[int]]) -> torch.Tensor:
    """HxW class indices -> 3xHxW uint8 colours; ignore pixels are white."""
    table = torch.zeros(256, 3, dtype=torch.uint8)
    table[: len(palette)] = torch.tensor(palette, dtype=torch.uint8)
    table[IGNORE_INDEX] = 255
    return table[mask.long().clamp(0, 255).cpu()].permute(2, 0, 1)


def denormalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """3xHxW normalised float -> 3xHxW uint8, undoing albumentations' Normalize defaults."""
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    return ((image.float().cpu() * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)


def confusion_image(matrix: torch.Tensor, cell: int = 12) -> torch.Tensor:
    """Row-normalised confusion matrix (rows: truth, columns: prediction) as a 3xHxW uint8 heat
    map, `cell` pixels per entry; dark blue is 0, yellow is 1 (a short viridis-like ramp)."""
    rows = matrix.double()
    normalised = rows / rows.sum(dim=1, keepdim=True).clamp(min=1)
    ramp = torch.tensor([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=torch.float64)
    position = normalised * (len(ramp) - 1)
    low = position.floor().long().clamp(max=len(ramp) - 2)
    fraction = (position - low).unsqueeze(-1)
    colours = ramp[low] * (1 - fraction) + ramp[low + 1] * fraction
    image = colours.round().to(torch.uint8).permute(2, 0, 1)
    return image.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)
