"""The one augmentation step the aug configs cannot spell with albumentations alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A

from segdil.errors import ConfigError


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
