"""Training the context module on cached front-end outputs (`trainer.frozen_cache`), as Yu &
Koltun trained theirs: the frozen front end runs once over the training images, without
augmentation, and the module then trains on what it produced. A step then costs the module
alone instead of a front-end forward pass and the module's own training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.utils.data import Dataset

from segdil.data.base import SegmentationDataset
from segdil.data.loader import build_eval_loader
from segdil.errors import ConfigError
from segdil.models.segmentor import Segmentor

log = logging.getLogger("segdil")


class FrontEndCache(Dataset):
    """The front end's output for every training image with the image's label mask. Indexed
    by EpochSampler's (index, seed) pairs; the seed goes unused: nothing is augmented."""

    def __init__(self, fronts: torch.Tensor, masks: torch.Tensor, split: str) -> None:
        self.fronts, self.masks, self.split = fronts, masks, split

    def __len__(self) -> int:
        return len(self.fronts)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = item[0] if isinstance(item, tuple) else item
        return self.fronts[index], self.masks[index]

    @property
    def label_size(self) -> tuple[int, int]:
        return tuple(self.masks.shape[-2:])


class OneSize(Dataset):
    """`dataset`'s (image, mask) pairs as they are, refusing a mask of another size than the
    first: checked per image, because the collate pads a batch to its largest image and would
    hide the difference."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.split, self.first_size = dataset, dataset.split, None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset[index]
        size = tuple(mask.shape[-2:])
        self.first_size = self.first_size or size
        if size != self.first_size:
            raise ConfigError(
                f"trainer.frozen_cache=true: the {self.split} images come in several sizes after the val transform "
                f"({self.first_size} for the first, {size} for image {index}); the cache needs one size (CamVid, Cityscapes)"
            )
        return image, mask


class FromFrontEnd(nn.Module):
    """`Segmentor.from_front_end` as a module (what the trainer calls, and DDP wraps): cached
    front-end outputs -> logits at the labels' size."""

    def __init__(self, model: Segmentor, label_size: Sequence[int]) -> None:
        super().__init__()
        self.model, self.label_size = model, tuple(label_size)

    def forward(self, fronts: torch.Tensor) -> torch.Tensor:
        return self.model.from_front_end(fronts, self.label_size)


@torch.no_grad()
def cache_front_end(
    model: Segmentor,
    dataset: SegmentationDataset,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
) -> FrontEndCache:
    """Run `model`'s frozen front end once over `dataset` (built with the deterministic val
    transform) and keep its outputs, in float32 on the CPU, with the masks."""
    model.check_front_end_frozen()
    started = time.perf_counter()
    fronts, masks = [], []
    if isinstance(dataset, SegmentationDataset):
        dataset.preload()
    for images, labels in build_eval_loader(OneSize(dataset), batch_size, num_workers=0, device=device):
        with autocast():
            fronts.append(model.front_end(images.to(device)).float().cpu())
        masks.append(labels)
    cache = FrontEndCache(torch.cat(fronts), torch.cat(masks), dataset.split)
    what = "class scores" if model.context_placement == "scores" else "last backbone feature"
    shape = "x".join(str(side) for side in cache.fronts.shape[1:])
    megabytes = cache.fronts.numel() * cache.fronts.element_size() / 2**20
    log.info(
        "frozen front end: cached its %s (%s, %.0f MB) for the %d %s images in %.1f s, without augmentation; "
        "the context module trains on them (trainer.frozen_cache)",
        what, shape, megabytes, len(cache), dataset.split, time.perf_counter() - started,
    )
    return cache
