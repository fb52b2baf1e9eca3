"""Build datasets from their config and wrap them in reproducible DataLoaders."""

from __future__ import annotations

import random

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, default_collate

from segdil.data.base import IGNORE_INDEX, SegmentationDataset, Transform
from segdil.errors import DataError

# Keys of a dataset config that choose splits for the entry points; the rest go to the class.
SPLIT_KEYS = ("split", "train_split", "val_split")


def build_dataset(dataset_cfg: DictConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    """Instantiate the dataset class named by `_target_` for one split. A required key left
    unset (`???`) raises MissingMandatoryValue with its full name, e.g. dataset.class_names."""
    values = OmegaConf.to_container(dataset_cfg, resolve=True, throw_on_missing=True)
    class_args = {key: value for key, value in values.items() if key not in SPLIT_KEYS}
    return instantiate(class_args, split=split, transform=transform, _convert_="all")


def _seed_worker(worker_id: int) -> None:
    """Give each worker its own, reproducible seed (derived from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info else None
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, mask) pairs. Images of different sizes (VOC's, users' folders) are padded
    at the bottom and right to the largest in the batch, image with 0, mask with 255, so
    evaluation can batch them; the padding is never scored. For predictions identical to
    one-by-one inference, evaluate with batch size 1."""
    images, masks = zip(*batch)
    height, width = max(m.shape[-2] for m in masks), max(m.shape[-1] for m in masks)
    if all(m.shape == (height, width) for m in masks):
        return default_collate(batch)  # in a worker, it stacks straight into shared memory
    image_batch = images[0].new_zeros((len(batch), images[0].shape[0], height, width))
    mask_batch = masks[0].new_full((len(batch), height, width), IGNORE_INDEX)
    for k, (image, mask) in enumerate(batch):
        image_batch[k, :, : image.shape[-2], : image.shape[-1]] = image
        mask_batch[k, : mask.shape[-2], : mask.shape[-1]] = mask
    return image_batch, mask_batch


def build_loader(
    dataset: SegmentationDataset,
    batch_size: int,
    num_workers: int,
    train: bool,
    seed: int,
    device: torch.device,
) -> DataLoader:
    """Shuffled, `drop_last` loader for training; ordered loader for evaluation.

    With no workers the transform's random state is seeded here, so a run is reproducible
    whatever the worker count.
    """
    if train and len(dataset) < batch_size:
        raise DataError(
            f"the {dataset.split} split has {len(dataset)} images, fewer than one batch of {batch_size} "
            "(training drops incomplete batches): lower data.batch_size"
        )
    generator = torch.Generator().manual_seed(seed)
    transform = dataset.transform
    if num_workers == 0 and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker,
        generator=generator,
        collate_fn=collate,
    )
