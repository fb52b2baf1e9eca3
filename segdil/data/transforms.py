"""The augmentation steps the aug configs cannot spell with albumentations alone: a rescale by
a factor, and a random crop that avoids crops of one class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np

from segdil.data.base import IGNORE_INDEX
from segdil.errors import ConfigError

# mmsegmentation's RandomCrop tries a crop, then re-draws it up to this many times while it fails.
CROP_REDRAWS = 10


def rescale(scale_range: Sequence[float], **kwargs: Any) -> A.BasicTransform:
    """Resize the whole image (and mask, nearest neighbour) by a factor drawn uniformly from
    `scale_range`, e.g. [0.5, 2.0]; [s, s] is a fixed factor and [1, 1] does nothing.

    albumentations' RandomScale takes the factor minus one (`scale_limit`); configs state the
    factor itself, as papers do. Other RandomScale arguments (interpolation, ...) pass through.
    """
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise ConfigError(f"scale range {list(scale_range)}: expected [low, high] with 0 < low <= high")
    if low == high == 1.0:
        return A.NoOp()
    return A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=1.0, **kwargs)


class CatMaxRatioCrop(A.RandomCrop):
    """albumentations' RandomCrop (same arguments: padding with `fill` / `fill_mask` /
    `border_mode` when the image is smaller than the crop) that re-draws a crop, up to 10 times,
    while one class covers `cat_max_ratio` or more of its labelled pixels (`ignore_index` left
    out) or it holds fewer than two classes; the last draw is kept. This is mmsegmentation's
    `RandomCrop(cat_max_ratio=0.75)` of its Cityscapes and ADE20K pipelines, condition included.

    Written here because albumentations has no such crop: its CropNonEmptyMaskIfExists centres a
    crop on non-zero mask pixels, which is not a bound on one class's share. The draws come from
    the transform's own generator, so the Compose's per-sample seed fixes them as for every other
    transform; at `cat_max_ratio` 1 (the default) it draws exactly as RandomCrop does.
    """

    def __init__(self, height: int, width: int, cat_max_ratio: float = 1.0, ignore_index: int = IGNORE_INDEX, **kwargs: Any) -> None:
        if not 0.0 < float(cat_max_ratio) <= 1.0:
            raise ConfigError(f"aug.cat_max_ratio={cat_max_ratio}: expected a share in (0, 1], 1 = any crop (e.g. 0.75 as mmsegmentation)")
        super().__init__(height, width, **kwargs)
        self.cat_max_ratio, self.ignore_index = float(cat_max_ratio), ignore_index

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        crop = super().get_params_dependent_on_data(params, data)
        if self.cat_max_ratio >= 1.0 or "mask" not in data:
            return crop
        for _ in range(CROP_REDRAWS):
            if self._varied(self.apply_to_mask(data["mask"], **crop)):
                break
            crop = super().get_params_dependent_on_data(params, data)
        return crop

    def _varied(self, mask: np.ndarray) -> bool:
        """Two classes or more, none covering `cat_max_ratio` of the labelled pixels."""
        counts = np.bincount(mask.ravel().astype(np.int64))
        if self.ignore_index < len(counts):
            counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio
