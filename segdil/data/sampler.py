"""The training sampler: an order that is a pure function of (seed, epoch), so runs resume exactly.

torch's DistributedSampler shards and reshuffles per epoch, but cannot start mid-epoch and
leaves augmentation randomness to whichever worker draws a sample. This sampler also yields a
seed per sample (derived from seed, epoch and index) that the dataset gives its transform:
augmentation then no longer depends on worker count, process count or where a run resumed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one sample in one epoch."""
    return int(np.random.SeedSequence((seed, epoch, index)).generate_state(1)[0])


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled, sharded over `world_size` ranks, whole batches only; yields (index, seed).

    The epoch's permutation is cut into global batches of B * world_size; rank r takes the r-th
    block of B from each. So world_size processes with batch B see, step for step, the samples
    one process sees with batch B * world_size, or with batch B and `accumulate=world_size`
    (then even grouped the same way, which keeps BatchNorm statistics comparable).
    """

    def __init__(
        self, dataset_size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, endless: bool = False
    ) -> None:
        self.seed, self.rank, self.world_size = seed, rank, world_size
        # endless: run on into the next epochs, so that one loader iterator serves a whole run.
        # Restarting it per epoch stalls the step at every epoch start while the workers resume
        # and make the first batch (~20 ms of a 70 ms demo step, 1.4% of its time).
        self.endless = endless
        self.dataset_size = dataset_size
        self.batches_per_epoch = dataset_size // (batch_size * world_size)
        self.samples_per_rank = self.batches_per_epoch * batch_size
        self.batch_size = batch_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Choose the epoch to iterate next, optionally skipping its first `start_batch` batches."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Samples left in the chosen epoch (for an endless order: in its first epoch only)."""
        return self.samples_per_rank - self.start_batch * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start_batch = self.epoch, self.start_batch
        while True:
            yield from self._epoch(epoch, start_batch)
            if not self.endless:
                return
            epoch, start_batch = epoch + 1, 0

    def _epoch(self, epoch: int, start_batch: int) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.dataset_size, generator=generator)[: self.samples_per_rank * self.world_size]
        blocks = order.view(self.batches_per_epoch, self.world_size, self.batch_size)
        mine = blocks[start_batch:, self.rank].flatten().tolist()
        for index in mine:
            yield index, sample_seed(self.seed, epoch, index)
