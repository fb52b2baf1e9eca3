"""Pre-flight label check: find labels outside [0, num_classes) before the first training step,
instead of a crash deep inside the loss (or, on a GPU, a silent wrong result)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import numpy as np

from segdil.data.base import IGNORE_INDEX, SegmentationDataset
from segdil.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def indices_to_check(length: int, sample: int | str) -> np.ndarray:
    """`all` (every label), 0 (none) or N evenly spaced labels: an even spread covers every
    sequence or city of a sorted split and is the same on every run."""
    if sample == "all":
        return np.arange(length)
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
        raise ConfigError(f"data.check_labels={sample!r}: expected all, 0 (off) or a number of labels per split")
    if sample >= length:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, sample).round().astype(np.int64))


def check_labels(datasets: Iterable[SegmentationDataset], sample: int | str = "all") -> None:
    """Read the labels chosen by `sample` in each dataset; raise a DataError naming the first
    file that holds values outside [0, num_classes) other than 255, and those values."""
    for dataset in datasets:
        start = time.perf_counter()
        indices = indices_to_check(len(dataset), sample)
        allowed = np.zeros(256, dtype=bool)
        allowed[: dataset.num_classes] = allowed[IGNORE_INDEX] = True
        bad = []
        for index in indices:
            present = np.bincount(dataset.load_mask(int(index)).ravel(), minlength=256) > 0
            if (present & ~allowed).any():
                bad.append((int(index), np.flatnonzero(present & ~allowed).tolist()))
        if bad:
            index, values = bad[0]
            raise DataError(
                f"label {dataset.describe(index)} holds values {values} outside 0..{dataset.num_classes - 1} "
                f"(255 = ignore); {len(bad)} of {len(indices)} checked {dataset.split} labels are affected"
            )
        if len(indices):
            log.info(
                "label check: %d of %d %s labels within 0..%d or 255 (%.1f s)",
                len(indices),
                len(dataset),
                dataset.split,
                dataset.num_classes - 1,
                time.perf_counter() - start,
            )
