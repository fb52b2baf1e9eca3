"""Build datasets from their config and wrap them in reproducible DataLoaders."""

from __future__ import annotations

import random

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from segdil.data.base import IGNORE_INDEX, SegmentationDataset, Transform
from segdil.data.sampler import EpochSampler
from segdil.errors import DataError

# Keys of a dataset config that choose splits for the entry points; the rest go to the class.
SPLIT_KEYS = ("split", "train_split", "val_split")


def build_dataset(dataset_cfg: DictConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    """Instantiate the dataset class named by `_target_` for one split. A required key left
    unset (`???`) raises MissingMandatoryValue with its full name, e.g. dataset.class_names.
    A cached dataset is decoded when its loader is built, after the pre-flight check."""
    values = OmegaConf.to_container(dataset_cfg, resolve=True, throw_on_missing=True)
    class_args = {key: value for key, value in values.items() if key not in SPLIT_KEYS}
    return instantiate(class_args, split=split, transform=transform, _convert_="all")


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from torch's per-worker seed (for user code that
    draws from them; segdil's own augmentation is seeded per sample by EpochSampler)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


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


def _loader_options(num_workers: int, device: torch.device) -> dict:
    return {
        # A private generator: creating a loader iterator must not draw from the global RNG,
        # or a resumed run (which creates it at another iteration) would get other dropout masks.
        "generator": torch.Generator().manual_seed(0),
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "pin_memory": device.type == "cuda",
        "worker_init_fn": _seed_worker,
        "collate_fn": collate,
    }


def build_train_loader(
    dataset: SegmentationDataset | Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    limit: int | None = None,
    endless: bool = False,
) -> DataLoader:
    """Shuffled whole batches of this rank's shard; call `loader.sampler.set_epoch` per epoch,
    or once with `endless`, whose loader runs on epoch after epoch. `limit` (data.train_limit)
    trains on the first `limit` samples only, e.g. one batch to overfit."""
    size = len(dataset) if limit is None else min(limit, len(dataset))
    if size < batch_size * world_size:
        raise DataError(
            f"the {dataset.split} split has {size} images{'' if limit is None else ' within data.train_limit'}, fewer than "
            f"one batch of {batch_size} x {world_size} process(es) (training drops incomplete batches): lower data.batch_size"
        )
    if isinstance(dataset, SegmentationDataset):  # not the trainer's cache of front-end outputs
        dataset.preload()
    sampler = EpochSampler(size, batch_size, seed, rank, world_size, endless)
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
    if isinstance(dataset, SegmentationDataset):  # a Subset (the benchmarks' slices) decodes lazily
        dataset.preload()
    shard = dataset if world_size == 1 else Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, **_loader_options(num_workers, device))
