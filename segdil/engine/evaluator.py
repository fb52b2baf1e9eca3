"""Run a model over a loader and accumulate the confusion matrix (whole-image inference)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from segdil.data.base import IGNORE_INDEX
from segdil.data.loader import build_dataset, build_loader
from segdil.engine.builders import build_model, build_transforms, resolve_device
from segdil.engine.checkpoint import load_checkpoint
from segdil.errors import ConfigError
from segdil.metrics import ConfusionMatrix, SegmentationMetrics, format_table

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    progress: bool = True,
    description: str = "eval",
) -> SegmentationMetrics:
    """Metrics of `model` on every image of `loader`; the model is left in eval mode."""
    model.eval()
    confusion = ConfusionMatrix(num_classes, IGNORE_INDEX, device=device)
    for images, masks in tqdm(loader, desc=description, disable=not progress, leave=False, dynamic_ncols=True):
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        confusion.update(model(images).argmax(dim=1), masks)
    return confusion.compute()


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path) -> dict:
    """eval.py's work: rebuild the model from the checkpoint's own config, evaluate
    `cfg.dataset.split`, print the table and write `metrics.json` into `run_dir`."""
    checkpoint = load_checkpoint(cfg.checkpoint)
    trained_cfg = OmegaConf.create(checkpoint["config"])
    class_names = list(checkpoint["class_names"])
    device = resolve_device(cfg.device)

    _, val_transform = build_transforms(cfg.aug)
    dataset = build_dataset(cfg.dataset, cfg.dataset.split, val_transform)
    if list(dataset.class_names) != class_names:
        raise ConfigError(
            f"checkpoint={cfg.checkpoint} predicts {len(class_names)} classes {class_names[:4]}..., "
            f"but the chosen dataset has {dataset.num_classes} classes {list(dataset.class_names)[:4]}...: "
            "pass the dataset the model was trained on (e.g. dataset=camvid dataset.root=...)"
        )
    model = build_model(trained_cfg.model, len(class_names), pretrained=False)
    model.load_state_dict(checkpoint["model"])
    model.to(device)
    loader = build_loader(dataset, cfg.batch_size, cfg.num_workers, False, 0, device)

    start = time.perf_counter()
    metrics = evaluate(model, loader, len(class_names), device, description=f"eval {cfg.dataset.split}")
    elapsed = time.perf_counter() - start
    log.info("%s split, %d images, %.1f s\n%s", cfg.dataset.split, len(dataset), elapsed, format_table(metrics, class_names))
    result = {
        **metrics.as_dict(class_names),
        "num_images": len(dataset),
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        "split": cfg.dataset.split,
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    log.info("metrics written to %s", run_dir / "metrics.json")
    return result
