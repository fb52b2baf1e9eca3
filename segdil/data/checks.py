"""Pre-flight data check: find unreadable or truncated files, images whose label has another
size, and labels outside [0, num_classes) before the first training step, instead of a crash
hours into the run (or, for labels on a GPU, a silent wrong result)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import numpy as np

from segdil.data.base import IGNORE_INDEX, SegmentationDataset
from segdil.data.synthetic import SyntheticShapes
from segdil.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SHOWN = 3  # bad samples named in the error line; its count covers them all


def evenly_spaced(length: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over 0..length-1, first and last included (all of them when
    `count` >= `length`): an even spread covers every sequence or city of a sorted split and is
    the same on every run."""
    if count >= length:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, count).round().astype(np.int64))


def indices_to_check(length: int, sample: int | str) -> np.ndarray:
    """`all` (every sample), 0 (none) or N evenly spaced samples."""
    if sample == "all":
        return np.arange(length)
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
        raise ConfigError(f"data.check_labels={sample!r}: expected all, 0 (off) or a number of samples per split")
    return evenly_spaced(length, sample)


def sample_problem(dataset: SegmentationDataset, index: int, allowed: np.ndarray) -> str | None:
    """What is wrong with sample `index`, naming its file (unreadable or truncated, image and
    label sizes differ, label values that are no class), or None when it is fine."""
    try:
        mask = dataset.checked_mask(index)
    except DataError as error:
        return str(error)
    present = np.bincount(mask.ravel(), minlength=256) > 0
    outside = np.flatnonzero(present & ~allowed).tolist()
    if outside:
        return f"label {dataset.describe(index)} holds values {outside} outside 0..{dataset.num_classes - 1} (255 = ignore)"
    return None


def bad_samples_error(split: str, problems: list[str], checked: int, advice: str) -> DataError:
    """One line: how many of the checked samples are bad, the first SHOWN of them, and `advice`."""
    first = f" (the first {SHOWN} shown)" if len(problems) > SHOWN else ""
    listed = "; ".join(problems[:SHOWN])
    return DataError(f"{len(problems)} of {checked} checked {split} samples are bad{first}: {listed}; {advice}")


def check_labels(datasets: Iterable[SegmentationDataset], sample: int | str = "all", skip_bad: bool = False) -> None:
    """Check the samples chosen by `sample` in each dataset: the label decodes and holds class
    ids or 255 only, the image file is whole and has the label's size. Bad samples raise one
    DataError; with `skip_bad` they are logged in one warning per split and left out of the
    dataset instead, their problems kept in `dataset.skipped` (unless none would be left)."""
    if not isinstance(skip_bad, bool):
        raise ConfigError(f"data.skip_bad={skip_bad!r}: expected true or false")
    for dataset in datasets:
        if isinstance(dataset, SyntheticShapes):
            # Drawn in memory from (seed, split, index): no file can be truncated and every label
            # is a class id or 255 by construction, so there is nothing to check. (Checking it
            # only drew the images, 2.5 ms each on a 2-core AMD EPYC, AVX2; a cached split is
            # drawn by the loader's preload instead.)
            log.debug("pre-flight check skipped for the generated %s split: correct by construction", dataset.split)
            continue
        start, total = time.perf_counter(), len(dataset)
        indices = indices_to_check(total, sample)
        allowed = np.zeros(256, dtype=bool)
        allowed[: dataset.num_classes] = allowed[IGNORE_INDEX] = True
        found = {int(index): sample_problem(dataset, int(index), allowed) for index in indices}
        bad = {index: problem for index, problem in found.items() if problem is not None}
        if bad and not skip_bad:
            advice = "fix or remove them, or set data.skip_bad=true to train without them"
            raise bad_samples_error(dataset.split, list(bad.values()), len(indices), advice)
        if bad and len(bad) == total:
            raise bad_samples_error(dataset.split, list(bad.values()), len(indices), "data.skip_bad=true would leave none")
        if bad:
            log.warning("data.skip_bad=true: leaving out %d bad %s samples: %s", len(bad), dataset.split, "; ".join(bad.values()))
            dataset.exclude(sorted(bad))
            dataset.skipped = list(bad.values())
        if len(indices):
            seconds = time.perf_counter() - start
            log.info(
                "pre-flight check of %d of %d %s samples (%.1f s, %.0f/s): files whole, image and label sizes equal, "
                "labels within 0..%d or 255%s",
                len(indices),
                total,
                dataset.split,
                seconds,
                len(indices) / max(seconds, 1e-9),
                dataset.num_classes - 1,
                f"; {len(bad)} bad ones left out" if bad else "",
            )
