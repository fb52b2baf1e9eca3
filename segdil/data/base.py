"""The dataset contract every segdil dataset follows, and the transform step they share."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

IGNORE_INDEX = 255

Transform = Callable[..., dict]


class SegmentationDataset(Dataset):
    """Yields (image float CxHxW after the transform, mask int64 HxW with void = 255).

    Subclasses implement `__len__`, `load(index)` returning the raw (RGB uint8 HxWx3, uint8
    HxW mask with the dataset's void already mapped to 255) and `stem(index)`; they set
    `class_names` and may set `palette`.
    """

    class_names: tuple[str, ...] = ()

    def __init__(self, split: str, transform: Transform | None = None) -> None:
        self.split = split
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def stem(self, index: int) -> str:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is None:
            return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0, torch.from_numpy(mask).long()
        out = self.transform(image=image, mask=mask)
        return out["image"], torch.as_tensor(out["mask"]).long()
