"""Training losses: cross entropy with ignored pixels, class weights, label smoothing and OHEM; the
auxiliary-head weighting that wraps any of them; median-frequency class weights."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segdil.data.base import IGNORE_INDEX
from segdil.errors import ConfigError


# How the per-pixel losses become one number: `valid` divides by the (class-weighted) pixels kept,
# torch's ignore_index mean; `all` by every pixel, ignored ones included, as mmsegmentation does by
# default (its `avg_non_ignore=False`), which shrinks the loss of sparsely labelled batches.
AVERAGES = ("valid", "all")


class SegmentationLoss(nn.Module):
    """Pixel-wise cross entropy with ignored pixels, optional class weights, label smoothing and OHEM:
    the `_target_` of configs/loss/cross_entropy.yaml. One class rather than composed parts, because
    the parts act on the same per-pixel losses: OHEM chooses the pixels, class weights weigh them,
    and the average divides by what was kept.

    Label smoothing (`label_smoothing` = eps) trains towards (1 - eps) on the true class and
    eps / C spread over all classes, torch's definition; it keeps scores from growing without
    bound on a small training set.

    OHEM (online hard example mining, as in PSPNet's training): keep only pixels whose
    probability for the true class is below `ohem_thresh`, but never fewer than
    `ohem_min_kept` (the hardest ones); this focuses the loss on small, hard structures.
    """

    def __init__(
        self,
        class_weights: torch.Tensor | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100_000,
        ignore_index: int = IGNORE_INDEX,
        label_smoothing: float = 0.0,
        average: str = "valid",
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"loss.label_smoothing={label_smoothing}: expected a value in [0, 1)")
        if average not in AVERAGES:
            raise ConfigError(f"loss.average={average!r}: expected one of {list(AVERAGES)}")
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.ohem_thresh, self.ohem_min_kept, self.ignore_index = ohem_thresh, ohem_min_kept, ignore_index
        self.label_smoothing, self.average = label_smoothing, average

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        pixel_loss = F.cross_entropy(
            logits, target, self.class_weights, ignore_index=self.ignore_index, reduction="none", label_smoothing=self.label_smoothing
        )
        keep = target != self.ignore_index
        if self.ohem_thresh is not None:
            keep = keep & self._hard_pixels(logits, target, keep)
        if self.average == "all":
            return (pixel_loss * keep).sum() / target.numel()
        safe_target = torch.where(keep, target, torch.zeros_like(target))
        pixel_weight = self.class_weights[safe_target] if self.class_weights is not None else torch.ones_like(pixel_loss)
        pixel_weight = pixel_weight * keep
        # Guard the empty case (every pixel ignored): the loss is then 0 with a zero gradient.
        return (pixel_loss * keep).sum() / pixel_weight.sum().clamp(min=1e-12)

    @torch.no_grad()
    def _hard_pixels(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        prob = logits.softmax(dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
        valid_prob = prob[valid]
        if valid_prob.numel() == 0:
            return valid
        threshold = torch.tensor(self.ohem_thresh, device=prob.device)
        kept_at_least = min(self.ohem_min_kept, valid_prob.numel())
        threshold = torch.maximum(threshold, valid_prob.kthvalue(kept_at_least).values)
        return prob <= threshold


class WithAuxiliary(nn.Module):
    """`loss(out) + aux_weight * loss(aux)` for a Segmentor with an auxiliary head, which returns
    `{"out", "aux"}` in training; any loss of (logits, target) composes with it."""

    def __init__(self, loss: nn.Module, aux_weight: float) -> None:
        super().__init__()
        self.loss, self.aux_weight = loss, aux_weight

    def forward(self, outputs: torch.Tensor | dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        return self.loss(outputs["out"], target) + self.aux_weight * self.loss(outputs["aux"], target)


def median_frequency_weights(masks: Iterable[np.ndarray], num_classes: int) -> torch.Tensor:
    """Median frequency balancing (Eigen & Fergus, ICCV 2015): weight_c = median(f) / f_c, where
    f_c is the pixel count of class c over the pixels of the images in which c appears.
    A class that never appears gets weight 0 (nothing to weigh)."""
    class_pixels = np.zeros(num_classes, dtype=np.float64)
    image_pixels = np.zeros(num_classes, dtype=np.float64)
    for mask in masks:
        counts = np.bincount(mask[mask != IGNORE_INDEX].ravel().astype(np.int64), minlength=num_classes)[:num_classes]
        class_pixels += counts
        image_pixels += (counts > 0) * mask.size
    present = class_pixels > 0
    frequency = np.divide(class_pixels, image_pixels, out=np.zeros(num_classes), where=present)
    weights = np.zeros(num_classes)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return torch.tensor(weights, dtype=torch.float32)
