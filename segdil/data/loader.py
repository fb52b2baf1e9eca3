"""Build datasets from their config and wrap them in reproducible DataLoaders."""

from __future__ import annotations

import random

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from segdil.data.base import SegmentationDataset, Transform

# Keys of a dataset config that choose splits for the entry points; the rest go to the class.
SPLIT_KEYS = ("split", "train_split", "val_split")


def build_dataset(dataset_cfg: DictConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    """Instantiate the dataset class named by `_target_` for one split."""
    class_args = OmegaConf.masked_copy(dataset_cfg, [key for key in dataset_cfg if key not in SPLIT_KEYS])
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
    )
