"""TensorBoard records of a run, laid out to be read at a glance.

- Custom Scalars: val mIoU first, then train loss, learning rate and images/s; a validation
  group (mIoU against training minutes, best mIoU, accuracies, data wait); per-class IoU apart.
- Time Series groups, in TensorBoard's (alphabetical) order: `train/`, `val/` (mIoU first),
  `val_by_minute/`, `val_images/` (panels, confusion matrix), `val_iou/` (one card per class).
- Text: the config, the model (parameters, GFLOPs, output stride, receptive field, gridding),
  the per-class IoU table of every validation, the run's summary at the end.
- HParams from the first step: the settings users vary and the model's figures; the metrics
  are the latest values of scalars written at each validation, so a running or stopped run
  shows what it has reached.
Model facts and final figures are text and hparams only: a scalar written once is a chart
with a single dot.

Only the main process writes; on other ranks every method is a no-op.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from segdil.metrics import ConfusionMatrix, SegmentationMetrics
from segdil.models.summary import ModelSummary
from segdil.viz import confusion_figure, figure_image

# Scalar tags, named once: the layout and the HParams metrics refer to them.
TRAIN_LOSS, TRAIN_LR = "train/loss", "train/lr"
TRAIN_IMAGES_PER_S, TRAIN_DATA_WAIT = "train/images_per_s", "train/data_wait_fraction"
# "val/mIoU" sorts first in its Time Series group ("I" before the lower-case letters).
VAL_MIOU, VAL_BEST_MIOU = "val/mIoU", "val/mIoU_best"
VAL_PIXEL_ACC, VAL_MEAN_ACC = "val/pixel_acc", "val/mean_acc"
VAL_BY_MINUTE = "val_by_minute/mIoU"  # step: training minute, rounded
VAL_IOU = "val_iou/"  # + class name

# HParams metrics: (tag, name shown). Two, so that the table's first view (five settings, then
# the metrics) fits a 1400-pixel window; the accuracies are charts in Custom Scalars.
METRICS = ((VAL_MIOU, "val mIoU (latest)"), (VAL_BEST_MIOU, "best val mIoU"))
# Config values recorded as hparams, when the config has them.
HPARAM_KEYS = (
    "model.name", "model.backbone.depth", "model.backbone.output_stride", "optim.lr", "data.batch_size",
    "trainer.max_iters", "trainer.precision", "seed",
)
# The Hydra group choices recorded as hparams (when run through train.py).
HPARAM_CHOICES = ("experiment", "dataset", "aug")
# TensorBoard's HParams tab ticks five columns at first, those flagged `differs` first (then by
# name): the flag goes to the five settings most often compared, so optim.lr is never hidden.
SHOWN_FIRST = ("model.name", "model.context", "optim.lr", "data.batch_size", "trainer.max_iters")


def context_label(model: DictConfig) -> str:
    """The context module in a few words: off, or its variant and form, and its place when that
    is not the class scores (e.g. `basic residual`, `large plain on features`)."""
    context = model.get("context")
    if not context:
        return "off"
    label = f"{context.get('variant', 'on')} {'residual' if context.get('residual') else 'plain'}"
    placement = model.get("context_placement", "scores")
    return label if placement == "scores" else f"{label} on {placement}"


def hparam_value(value: object) -> float | str:
    """A value as the HParams plugin shows it well. The plugin has no integer type and prints
    every number with five significant digits (a batch size of 16 reads 16.000), so whole
    numbers are recorded as text; floats stay numbers (interval filters, log axes)."""
    if isinstance(value, float):
        return value
    return str(value)


def run_hparams(
    cfg: DictConfig, model: ModelSummary | None, choices: Mapping[str, str | None], precision: str | None = None
) -> dict[str, float | str]:
    """The settings users vary and the model's figures, as hparams."""
    values: dict[str, float | str] = {}
    for key in HPARAM_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            values[key] = hparam_value(value)
    if precision is not None:  # the precision in use, where the config says `auto`
        values["trainer.precision"] = precision
    if "model" in cfg:
        values["model.context"] = context_label(cfg.model)
    for group in HPARAM_CHOICES:
        if group in choices:
            values[group] = str(choices[group] or "none")
    if model is not None:
        values.update(model.hparams())
    return values


def hydra_choices() -> dict[str, str | None]:
    """The config group choices of this run (empty outside a Hydra app, e.g. in tests)."""
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def scalars_layout(class_names: Sequence[str]) -> dict:
    """The Custom Scalars layout: category -> chart title -> ["Multiline", [tag regexes]]."""

    def chart(*tags: str) -> list:
        return ["Multiline", [f"^{re.escape(tag)}$" for tag in tags]]

    return {
        "val mIoU, loss, learning rate, speed": {
            "val mIoU": chart(VAL_MIOU),
            "train loss": chart(TRAIN_LOSS),
            "learning rate": chart(TRAIN_LR),
            "train images/s (all processes)": chart(TRAIN_IMAGES_PER_S),
        },
        "validation": {
            "val mIoU against training minutes": chart(VAL_BY_MINUTE),
            "best val mIoU so far": chart(VAL_BEST_MIOU),
            "val pixel accuracy and mean class accuracy": chart(VAL_PIXEL_ACC, VAL_MEAN_ACC),
            "share of step time waiting for data": chart(TRAIN_DATA_WAIT),
        },
        "per-class IoU": {f"IoU {name}": chart(VAL_IOU + name) for name in class_names},
    }


def iou_markdown(metrics: SegmentationMetrics, class_names: Sequence[str]) -> str:
    """Per-class IoU and accuracy as a markdown table (n/a: the class is absent from both
    prediction and ground truth), then the means."""

    def cell(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.3f}"

    lines = ["| class | IoU | accuracy |", "| --- | ---: | ---: |"]
    for name, iou, accuracy in zip(class_names, metrics.iou.tolist(), metrics.accuracy.tolist()):
        lines.append(f"| {name} | {cell(iou)} | {cell(accuracy)} |")
    lines.append(f"| **mean** | **{cell(metrics.miou)}** | **{cell(metrics.mean_acc)}** |")
    lines.append(f"\npixel accuracy {cell(metrics.pixel_acc)}, frequency-weighted IoU {cell(metrics.fw_iou)}")
    return "\n".join(lines)


def shown_first(experiment: object) -> object:
    """torch's experiment summary with SHOWN_FIRST flagged and the metrics' display names set
    (torch's `hparams()` writes neither)."""
    plugin_data = experiment.value[0].metadata.plugin_data
    content = HParamsPluginData.FromString(plugin_data.content)
    for info in content.experiment.hparam_infos:
        info.differs = info.name in SHOWN_FIRST
    names = dict(METRICS)
    for info in content.experiment.metric_infos:
        info.display_name = names[info.name.tag]
    plugin_data.content = content.SerializeToString()
    return experiment


class RunLogger:
    """The run's TensorBoard writer. Events go to the run directory itself, so that
    `tensorboard --logdir <parent of the run directories>` names each run after its directory."""

    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir)) if enabled else None
        self.class_names: list[str] = []
        self.session_end = None

    def start(
        self,
        cfg: DictConfig,
        class_names: Sequence[str],
        model: ModelSummary | None = None,
        machine: str | None = None,
        precision: str | None = None,
    ) -> None:
        """Layout, config, model and machine text, and the HParams start record."""
        self.class_names = list(class_names)
        if not self.writer:
            return
        self.writer.add_custom_scalars(scalars_layout(self.class_names))
        self.writer.add_text("run/config", "```yaml\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```", 0)
        if model is not None:
            self.writer.add_text("run/model", model.markdown(), 0)
        if machine:
            self.writer.add_text("run/machine", machine, 0)
        values = run_hparams(cfg, model, hydra_choices(), precision)
        experiment, session_start, self.session_end = hparams_summaries(values, {tag: 0.0 for tag, _ in METRICS})
        file_writer = self.writer._get_file_writer()
        file_writer.add_summary(shown_first(experiment))
        file_writer.add_summary(session_start)
        self.writer.flush()  # a running run has its HPARAMS tab at once

    def train_scalars(self, iteration: int, loss: float, lr: float, images_per_s: float, data_wait_fraction: float) -> None:
        if self.writer:
            for tag, value in (
                (TRAIN_LOSS, loss), (TRAIN_LR, lr), (TRAIN_IMAGES_PER_S, images_per_s), (TRAIN_DATA_WAIT, data_wait_fraction),
            ):
                self.writer.add_scalar(tag, value, iteration)

    def validation_results(
        self,
        iteration: int,
        confusion: ConfusionMatrix,
        train_seconds: float,
        best_miou: float,
        panels: torch.Tensor | None = None,
    ) -> None:
        """The scalars (also the HParams metrics), per-class IoU, the IoU table, the confusion
        matrix and the panels of one validation."""
        if not self.writer:
            return
        metrics = confusion.compute()
        for tag, value in (
            (VAL_MIOU, metrics.miou), (VAL_BEST_MIOU, best_miou), (VAL_PIXEL_ACC, metrics.pixel_acc), (VAL_MEAN_ACC, metrics.mean_acc),
        ):
            self.writer.add_scalar(tag, value, iteration)
        self.writer.add_scalar(VAL_BY_MINUTE, metrics.miou, round(train_seconds / 60))
        for name, iou in zip(self.class_names, metrics.iou.tolist()):
            if not math.isnan(iou):  # absent from this validation: nothing to plot
                self.writer.add_scalar(VAL_IOU + name, iou, iteration)
        self.writer.add_text("val/iou_table", iou_markdown(metrics, self.class_names), iteration)
        self.writer.add_image("val_images/confusion_matrix", figure_image(confusion_figure(confusion.matrix, self.class_names)), iteration)
        if panels is not None:
            self.writer.add_image("val_images/panels", panels, iteration)
        self.writer.flush()

    def finish(self, summary: str, iteration: int, complete: bool) -> None:
        """The run's summary as text; a complete run writes the HParams end record (an interrupted
        one stays open: a resume continues it). Then the files are closed."""
        if not self.writer:
            return
        self.writer.add_text("run/summary", summary, iteration)
        if complete and self.session_end is not None:
            self.writer._get_file_writer().add_summary(self.session_end)
        self.writer.close()
