"""TensorBoard logging of a run: scalars, validation panels, confusion matrix, config, hparams.

Only the main process writes; on other ranks every method is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from segdil.metrics import ConfusionMatrix
from segdil.viz import colorize, confusion_image, denormalize

# Config values recorded as hparams next to the final metrics (when present in the config).
HPARAM_KEYS = (
    "model.name", "model.backbone.depth", "model.backbone.output_stride", "model.backbone.width",
    "optim.lr", "optim.weight_decay", "data.batch_size", "trainer.max_iters", "trainer.precision", "seed",
)


class RunLogger:
    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir)) if enabled else None

    def config(self, cfg: DictConfig) -> None:
        if self.writer:
            text = OmegaConf.to_yaml(cfg, resolve=True)
            self.writer.add_text("config", "```yaml\n" + text + "\n```", 0)  # markdown code block keeps layout

    def scalars(self, values: dict[str, float], iteration: int) -> None:
        if self.writer:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, iteration)

    def validation(
        self,
        confusion: ConfusionMatrix,
        class_names: Sequence[str],
        panels: torch.Tensor | None,
        iteration: int,
    ) -> None:
        if not self.writer:
            return
        metrics = confusion.compute()
        self.scalars(
            {"val/mIoU": metrics.miou, "val/pixel_acc": metrics.pixel_acc, "val/mean_acc": metrics.mean_acc},
            iteration,
        )
        for name, iou in zip(class_names, metrics.iou.tolist()):
            if iou == iou:  # NaN: class absent from this validation, nothing to plot
                self.writer.add_scalar(f"val/iou/{name}", iou, iteration)
        self.writer.add_image("val/confusion_matrix", confusion_image(confusion.matrix.cpu()), iteration)
        if panels is not None:
            self.writer.add_image("val/panels", panels, iteration)

    def hparams(self, cfg: DictConfig, final_metrics: dict[str, float]) -> None:
        if self.writer:
            values = {key: OmegaConf.select(cfg, key) for key in HPARAM_KEYS}
            values = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in values.items() if v is not None}
            self.writer.add_hparams(values, {f"hparam/{k}": v for k, v in final_metrics.items()}, run_name=".")

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def prediction_panels(
    images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor, palette: Sequence[Sequence[int]]
) -> torch.Tensor:
    """One picture: a row per image with input, ground truth and prediction side by side."""
    rows = [
        torch.cat([denormalize(image), colorize(mask, palette), colorize(prediction, palette)], dim=2)
        for image, mask, prediction in zip(images, masks, predictions)
    ]
    return torch.cat(rows, dim=1)
