"""The training loop: iteration based, with periodic validation, checkpoints and TensorBoard."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from segdil.data.base import IGNORE_INDEX
from segdil.data.checks import check_labels
from segdil.data.loader import build_dataset, build_loader
from segdil.engine.builders import build_model, build_transforms, resolve_device
from segdil.engine.checkpoint import save_checkpoint
from segdil.engine.evaluator import evaluate
from segdil.metrics import SegmentationMetrics, format_table

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Loop over the loader for ever, epoch after epoch (training is counted in iterations)."""
    while True:
        yield from loader


class Trainer:
    """Builds everything a run needs from the composed config, then `fit()` trains it."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.checkpoint_dir = run_dir / "checkpoints"
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.trainer.device)

        train_transform, val_transform = build_transforms(cfg.aug)
        train_set = build_dataset(cfg.dataset, cfg.dataset.train_split, train_transform)
        val_set = build_dataset(cfg.dataset, cfg.dataset.val_split, val_transform)
        check_labels((train_set, val_set), cfg.data.check_labels)  # pre-flight: stop on out-of-range labels
        self.class_names = list(train_set.class_names)
        data = cfg.data
        self.train_loader = build_loader(train_set, data.batch_size, data.num_workers, True, cfg.seed, self.device)
        self.val_loader = build_loader(
            val_set, data.val_batch_size, data.num_workers, False, cfg.seed, self.device
        )

        self.model = build_model(cfg.model, len(self.class_names)).to(self.device)
        self.optimizer = instantiate(cfg.optim, params=self.model.parameters())
        self.scheduler = instantiate(cfg.schedule, optimizer=self.optimizer, max_iters=cfg.trainer.max_iters)
        self.criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        self.iteration = 0
        self.best_miou = float("-inf")

    def fit(self) -> dict:
        """Train for `trainer.max_iters` iterations; return the run summary (also saved as JSON)."""
        trainer_cfg = self.cfg.trainer
        writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))
        parameters = sum(p.numel() for p in self.model.parameters())
        log.info(
            "model %s: %.2fM parameters | %d train / %d val images | device %s",
            self.cfg.model.get("name", "?"),
            parameters / 1e6,
            len(self.train_loader.dataset),
            len(self.val_loader.dataset),
            self.device,
        )
        start = time.perf_counter()
        metrics: SegmentationMetrics | None = None
        batches = _batches(self.train_loader)
        window_start, window_images = time.perf_counter(), 0
        with logging_redirect_tqdm(), tqdm(
            total=trainer_cfg.max_iters, desc="train", dynamic_ncols=True, disable=not trainer_cfg.progress
        ) as bar:
            while self.iteration < trainer_cfg.max_iters:
                images, masks = next(batches)
                loss = self._step(images, masks)
                self.iteration += 1
                window_images += images.shape[0]
                bar.update(1)
                if self.iteration % trainer_cfg.log_every == 0 or self.iteration == trainer_cfg.max_iters:
                    lr = self.optimizer.param_groups[0]["lr"]
                    images_per_s = window_images / (time.perf_counter() - window_start)
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                    writer.add_scalar("train/loss", loss, self.iteration)
                    writer.add_scalar("train/lr", lr, self.iteration)
                    writer.add_scalar("train/images_per_s", images_per_s, self.iteration)
                    window_start, window_images = time.perf_counter(), 0
                last = self.iteration == trainer_cfg.max_iters
                if self.iteration % trainer_cfg.val_every == 0 or last:
                    metrics = self._validate(writer)
                    window_start = time.perf_counter()  # validation time is not training throughput
                if self.iteration % trainer_cfg.ckpt_every == 0 or last:
                    save_checkpoint(self.checkpoint_dir / "last.pt", self._state())
        writer.close()
        elapsed = time.perf_counter() - start
        summary = {
            "iterations": self.iteration,
            "seconds": round(elapsed, 1),
            "best_mIoU": self.best_miou,
            "final": metrics.as_dict(self.class_names) if metrics else None,
            "run_dir": str(self.run_dir),
        }
        (self.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        log.info("final validation:\n%s", format_table(metrics, self.class_names))
        log.info(
            "done: %d iterations in %.0f s | best val mIoU %.4f | checkpoints in %s | TensorBoard: tensorboard --logdir %s",
            self.iteration,
            elapsed,
            self.best_miou,
            self.checkpoint_dir,
            self.run_dir / "tb",
        )
        return summary

    def _step(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        self.model.train()
        images = images.to(self.device, non_blocking=True)
        masks = masks.to(self.device, non_blocking=True)
        loss = self.criterion(self.model(images), masks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    def _validate(self, writer: SummaryWriter) -> SegmentationMetrics:
        metrics = evaluate(self.model, self.val_loader, len(self.class_names), self.device, self.cfg.trainer.progress)
        writer.add_scalar("val/mIoU", metrics.miou, self.iteration)
        writer.add_scalar("val/pixel_acc", metrics.pixel_acc, self.iteration)
        for name, iou in zip(self.class_names, metrics.iou.tolist()):
            if iou == iou:  # NaN: class absent from this validation, nothing to plot
                writer.add_scalar(f"val/iou/{name}", iou, self.iteration)
        log.info("iter %d: val mIoU %.4f, pixel acc %.4f", self.iteration, metrics.miou, metrics.pixel_acc)
        if metrics.miou > self.best_miou:
            self.best_miou = metrics.miou
            save_checkpoint(self.checkpoint_dir / "best.pt", self._state())
        return metrics

    def _state(self) -> dict:
        """Everything needed to rebuild the model (and, later, to resume the run)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration,
            "best_miou": self.best_miou,
            "class_names": self.class_names,
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
        }
