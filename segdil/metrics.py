"""Streaming confusion matrix and the segmentation metrics derived from it.

Policy: a class absent from both prediction and ground truth over the whole evaluation has IoU
NaN (reported as null) and is left out of the mean; pixels labelled `ignore_index` never count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SegmentationMetrics:
    """Fractions in [0, 1]; per-class values are NaN for classes with nothing to measure."""

    iou: torch.Tensor
    accuracy: torch.Tensor
    miou: float
    pixel_acc: float
    mean_acc: float
    fw_iou: float

    def as_dict(self, class_names: list[str] | tuple[str, ...]) -> dict:
        """JSON-ready: NaN per-class IoU becomes None (null)."""
        return {
            "mIoU": self.miou,
            "pixel_acc": self.pixel_acc,
            "mean_acc": self.mean_acc,
            "fwIoU": self.fw_iou,
            "per_class_iou": {
                name: (None if torch.isnan(value) else float(value)) for name, value in zip(class_names, self.iou)
            },
        }


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes matrix (rows: ground truth, columns: prediction)."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted class indices and labels of the same shape."""
        classes = self.num_classes
        target, prediction = target.long(), prediction.to(target.device).long()
        valid = target != self.ignore_index
        if bool((valid & ((target < 0) | (target >= classes))).any()):
            found = set(target[valid].unique().tolist())
            raise ValueError(
                f"label values outside [0, {classes}) and not {self.ignore_index}: {sorted(found - set(range(classes)))}"
            )
        # Ignored pixels go to one extra bin that is dropped: no boolean gather of the
        # valid pixels (two copies of the batch), which took most of the update's time.
        index = torch.where(valid, target * classes + prediction, classes * classes)
        counts = torch.bincount(index.flatten(), minlength=classes * classes + 1)[: classes * classes]
        self.matrix += counts.reshape(classes, classes).to(self.matrix.device)

    def reset(self) -> None:
        self.matrix.zero_()

    def compute(self) -> SegmentationMetrics:
        matrix = self.matrix.double().cpu()
        true_positive = matrix.diag()
        ground_truth = matrix.sum(dim=1)
        predicted = matrix.sum(dim=0)
        union = ground_truth + predicted - true_positive
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        iou = torch.where(union > 0, true_positive / union, nan)
        accuracy = torch.where(ground_truth > 0, true_positive / ground_truth, nan)
        total = matrix.sum()
        frequency = ground_truth / total if total > 0 else torch.zeros_like(ground_truth)
        present = ground_truth > 0
        return SegmentationMetrics(
            iou=iou,
            accuracy=accuracy,
            miou=_nanmean(iou),
            pixel_acc=float(true_positive.sum() / total) if total > 0 else float("nan"),
            mean_acc=_nanmean(accuracy),
            fw_iou=float((frequency[present] * iou[present]).sum()) if total > 0 else float("nan"),
        )


def _nanmean(values: torch.Tensor) -> float:
    valid = ~torch.isnan(values)
    return float(values[valid].mean()) if valid.any() else float("nan")


def format_table(metrics: SegmentationMetrics, class_names: list[str] | tuple[str, ...]) -> str:
    """A plain-text table of per-class IoU and accuracy followed by the summary metrics."""
    width = max(12, *(len(name) for name in class_names))
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}"]
    for name, iou, acc in zip(class_names, metrics.iou.tolist(), metrics.accuracy.tolist()):
        lines.append(f"{name:<{width}}  {_pct(iou):>7}  {_pct(acc):>7}")
    lines.append("-" * (width + 18))
    for label, value in (
        ("mIoU", metrics.miou),
        ("pixel acc", metrics.pixel_acc),
        ("mean acc", metrics.mean_acc),
        ("fwIoU", metrics.fw_iou),
    ):
        lines.append(f"{label:<{width}}  {_pct(value):>7}")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.2f}"
