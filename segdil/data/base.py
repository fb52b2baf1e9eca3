"""The dataset contract every segdil dataset follows, and the transform step they share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from segdil.data.labels import RGB
from segdil.progress import progress_bar

IGNORE_INDEX = 255

Transform = Callable[..., dict]


class SegmentationDataset(Dataset):
    """Yields (image float CxHxW after the transform, mask int64 HxW with void = 255).

    Subclasses implement `__len__`, `load(index)` returning the raw (RGB uint8 HxWx3, uint8
    HxW mask with the dataset's void already mapped to 255) and `stem(index)`; they set
    `class_names` and `palette` (one RGB triple per class, for visualisation). Datasets on
    disk also override `load_mask`, `checked_mask` (so the pre-flight check skips image
    decoding), `describe` and `exclude`. With `cache=True` each sample is decoded once and kept
    in memory (per process).
    """

    class_names: tuple[str, ...] = ()
    palette: tuple[RGB, ...] = ()

    def __init__(self, split: str, transform: Transform | None = None, cache: bool = False) -> None:
        self.split = split
        self.transform = transform
        self.decoded: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        self.skipped: list[str] = []  # what was wrong with each sample the pre-flight check left out

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def stem(self, index: int) -> str:
        raise NotImplementedError

    def load_cached(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """`load(index)`, kept after the first call when caching. Decoding a CamVid frame costs
        about as much CPU as all of its augmentation ten times over; small datasets can skip it.
        The arrays are made read-only, so a transform that writes into them fails loudly
        instead of corrupting the cache."""
        if self.decoded is None:
            return self.load(index)
        if index not in self.decoded:
            image, mask = self.load(index)
            image.setflags(write=False)
            mask.setflags(write=False)
            self.decoded[index] = image, mask
        return self.decoded[index]

    def preload(self) -> None:
        """Decode every sample into the cache now, in this process: loader workers forked later
        share it instead of each decoding the first epoch again. Nothing to do without a cache
        or once it is full."""
        if self.decoded is None or len(self.decoded) == len(self):
            return
        for index in progress_bar(range(len(self)), desc=f"decoding {self.split}", leave=False):
            self.load_cached(index)

    def load_mask(self, index: int) -> np.ndarray:
        """The uint8 mask of `load(index)` alone (void = 255)."""
        return self.load(index)[1]

    def checked_mask(self, index: int) -> np.ndarray:
        """The mask of sample `index` once its image is known to be readable and of the mask's
        size (a DataError naming the file otherwise): what the pre-flight check reads. Here the
        whole sample is loaded, into the cache when caching, so the check is also the preload."""
        return self.load_cached(index)[1]

    def exclude(self, indices: Sequence[int]) -> None:
        """Leave samples out (data.skip_bad); the others are renumbered. Datasets on disk implement it."""
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """Where sample `index` comes from, for error messages (its label file, on disk)."""
        return f"{self.split} sample {self.stem(index)}"

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`item` is an index, or (index, seed) from EpochSampler: the seed then fixes this
        sample's augmentation, whichever worker or process draws it."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        image, mask = self.load_cached(index)
        if seed is not None and hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(seed)
        if self.transform is None:
            return torch.from_numpy(image).permute(2, 0, 1).float() / 255.0, torch.from_numpy(mask).long()
        # A mask can leave the pipeline untouched (no flip drawn); torch would then wrap a cached,
        # read-only array and warn. A mask copy is cheap (a third of the image's bytes).
        out = self.transform(image=image, mask=mask if self.decoded is None else mask.copy())
        return out["image"], torch.as_tensor(out["mask"]).long()
