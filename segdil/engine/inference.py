"""Inference strategies: whole image or sliding window, optionally over several scales and flips.

Every strategy returns class probabilities (softmax) at the input's size; test-time
augmentation averages probabilities, so the single-scale, unflipped result has the same argmax
as the raw logits. `pad_to` first pads the (normalised) images with 0, the mean pixel, at the
bottom and right to a fixed size, and crops the result back: TF DeepLab's evaluation of VOC on
513x513 inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from segdil.errors import ConfigError


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of length `crop` every `stride`, the last one flush with the end."""
    if size <= crop:
        return [0]
    starts = list(range(0, size - crop, stride))
    return starts + [size - crop]


@torch.no_grad()
def slide_logits(
    model: nn.Module,
    images: torch.Tensor,
    num_classes: int,
    crop: Sequence[int],
    stride: Sequence[int],
    batch_windows: int = 4,
) -> torch.Tensor:
    """Logits of overlapping windows, averaged where they overlap.

    Memory holds the image-sized logits and count map plus one batch of windows. A window never
    leaves the image: where the image is smaller than the crop the window shrinks to it, so a
    crop at least the image size gives exactly the whole-image result.
    """
    if min(*crop, *stride) < 1:
        raise ConfigError(f"eval.crop={list(crop)} and eval.stride={list(stride)}: expected positive sizes")
    batch, _, height, width = images.shape
    crop_h, crop_w = min(crop[0], height), min(crop[1], width)
    logits = images.new_zeros(batch, num_classes, height, width, dtype=torch.float32)
    counts = images.new_zeros(1, 1, height, width, dtype=torch.float32)
    boxes = [
        (top, left)
        for top in window_starts(height, crop_h, stride[0])
        for left in window_starts(width, crop_w, stride[1])
    ]
    for first in range(0, len(boxes), batch_windows):
        chunk = boxes[first : first + batch_windows]
        windows = torch.cat([images[:, :, t : t + crop_h, l : l + crop_w] for t, l in chunk])
        outputs = model(windows).float().split(batch)
        for (top, left), output in zip(chunk, outputs):
            logits[:, :, top : top + crop_h, left : left + crop_w] += output
            counts[:, :, top : top + crop_h, left : left + crop_w] += 1
    return logits / counts


def pad_bottom_right(images: torch.Tensor, size: Sequence[int] | None) -> torch.Tensor:
    """Images padded with 0 at the bottom and right to at least `size` [height, width]; a side
    already as long stays as it is. After normalisation 0 is the mean pixel, TF DeepLab's fill."""
    if size is None:
        return images
    height, width = images.shape[-2:]
    return F.pad(images, (0, max(0, size[1] - width), 0, max(0, size[0] - height)))


class Predictor:
    """Class probabilities for a batch of normalised images with the chosen strategy.

    mode: `whole` (one forward per image) or `slide` (windows of `crop` every `stride`);
    scales: resize factors, each result resized back (bilinear) before averaging;
    flip: also run the horizontally flipped image and flip its result back;
    pad_to: run all of that on the images padded to this [height, width] (bottom and right, the
    mean pixel), then keep the input's own pixels.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        mode: str = "whole",
        crop: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        batch_windows: int = 4,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        autocast: Callable[[], ContextManager] = nullcontext,
        pad_to: Sequence[int] | None = None,
    ) -> None:
        if mode not in ("whole", "slide"):
            raise ConfigError(f"eval.mode={mode!r}: expected 'whole' or 'slide'")
        if mode == "slide" and (crop is None or stride is None):
            raise ConfigError("eval.mode=slide needs eval.crop and eval.stride ([height, width] each)")
        if not scales or any(s <= 0 for s in scales):
            raise ConfigError(f"eval.scales={list(scales)}: expected positive factors")
        self.model, self.num_classes = model, num_classes
        self.mode, self.crop, self.stride, self.batch_windows = mode, crop, stride, batch_windows
        self.scales, self.flip, self.autocast = [float(s) for s in scales], flip, autocast
        if pad_to is not None and (len(pad_to) != 2 or min(pad_to) < 1):
            raise ConfigError(f"eval.pad_to={list(pad_to)}: expected null or [height, width], whole numbers >= 1")
        self.pad_to = None if pad_to is None else [int(v) for v in pad_to]

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            if self.mode == "whole":
                return self.model(images).float()
            return slide_logits(self.model, images, self.num_classes, self.crop, self.stride, self.batch_windows)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        return self._averaged(pad_bottom_right(images, self.pad_to))[..., :height, :width]

    def _averaged(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities averaged over the scales and flips."""
        size = images.shape[-2:]
        total = None
        for scale in self.scales:
            scaled = images
            if scale != 1.0:
                scaled = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
            for flipped in (False, True) if self.flip else (False,):
                view = scaled.flip(-1) if flipped else scaled
                logits = self._logits(view)
                if flipped:
                    logits = logits.flip(-1)
                if logits.shape[-2:] != size:
                    logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
                probabilities = logits.softmax(dim=1)
                total = probabilities if total is None else total.add_(probabilities)
        return total / (len(self.scales) * (2 if self.flip else 1))
