"""Build datasets from their config and wrap them in reproducible DataLoaders."""

from __future__ import annotations

import random

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Subset

from segdil.data.base import SegmentationDataset, Transform
from segdil.data.sampler import EpochSampler

# Keys of a dataset config that choose splits for the entry points; the rest go to the class.
SPLIT_KEYS = ("split", "train_split", "val_split")


def build_dataset(dataset_cfg: DictConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    """Instantiate the dataset class named by `_target_` for one split."""
    class_args = OmegaConf.masked_copy(dataset_cfg, [key for key in dataset_cfg if key not in SPLIT_KEYS])
    return instantiate(class_args, split=split, transform=transform, _convert_="all")


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from torch's per-worker seed (for user code that
    draws from them; segdil's own augmentation is seeded per sample by EpochSampler)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _loader_options(num_workers: int, device: torch.device) -> dict:
    return {
        # A private generator: creating a loader iterator must not draw from the global RNG,
        # or a resumed run (which creates it at another iteration) would get other dropout masks.
        "generator": torch.Generator().manual_seed(0),
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": _seed_worker,
    }


def build_train_loader(
    dataset: SegmentationDataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Shuffled whole batches of this rank's shard; call `loader.sampler.set_epoch` per epoch."""
    if len(dataset) < batch_size * world_size:
        raise ValueError(f"{len(dataset)} training images cannot fill one batch of {batch_size} x {world_size}")
    sampler = EpochSampler(len(dataset), batch_size, seed, rank, world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **_loader_options(num_workers, device))


def build_eval_loader(
    dataset: SegmentationDataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Every image exactly once over all ranks (rank r takes r, r + world_size, ...), in order."""
    shard = dataset if world_size == 1 else Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, **_loader_options(num_workers, device))
