"""Evaluation: run a Predictor over a loader into a confusion matrix; eval.py's whole job."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from segdil.config_checks import EVAL_KEYS, check_values
from segdil.data.base import IGNORE_INDEX
from segdil.data.loader import build_dataset, build_eval_loader
from segdil.engine.builders import build_transforms, resolve_device, restore_model
from segdil.engine.distributed import all_reduce_sum
from segdil.engine.inference import Predictor
from segdil.engine.precision import Precision, autocast_factory, choose_precision
from segdil.engine.prediction_files import PredictionWriter
from segdil.errors import ConfigError
from segdil.machine import describe, machine_info
from segdil.metrics import ConfusionMatrix, format_table
from segdil.profiling import peak_rss_mib
from segdil.progress import progress_bar
from segdil.data.labels import voc_colormap

log = logging.getLogger(__name__)

BatchCallback = Callable[[int, torch.Tensor], None]


@torch.no_grad()
def evaluate(
    predictor: Predictor,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    progress: bool = True,
    description: str = "eval",
    on_batch: BatchCallback | None = None,
) -> ConfusionMatrix:
    """The confusion matrix over every image of `loader`, summed over all processes (each sees
    its shard). `on_batch(first_index, predictions)` sees each batch's class maps. The model is
    left in eval mode."""
    predictor.model.eval()
    confusion = ConfusionMatrix(num_classes, IGNORE_INDEX, device=device)
    seen = 0
    for images, masks in progress_bar(loader, enabled=progress, desc=description, leave=False):
        predictions = predictor(images.to(device, non_blocking=True)).argmax(dim=1)
        confusion.update(predictions, masks.to(device, non_blocking=True))
        if on_batch is not None:
            on_batch(seen, predictions)
        seen += images.shape[0]
    all_reduce_sum(confusion.matrix)
    return confusion


def build_predictor(
    eval_cfg: DictConfig, model: torch.nn.Module, num_classes: int, device: torch.device, precision: Precision | None = None
) -> Predictor:
    """The inference strategy chosen by the `eval` config node (configs/inference/), at `precision`
    (default: `eval.precision` resolved for `device`)."""
    precision = precision or choose_precision(eval_cfg.precision, device, "eval.precision")
    return Predictor(
        model,
        num_classes,
        mode=eval_cfg.mode,
        crop=list(eval_cfg.crop),
        stride=list(eval_cfg.stride),
        batch_windows=eval_cfg.batch_windows,
        scales=list(eval_cfg.scales),
        flip=eval_cfg.flip,
        autocast=autocast_factory(precision.name, device),
        pad_to=None if eval_cfg.pad_to is None else list(eval_cfg.pad_to),
    )


def peak_memory_mib(device: torch.device) -> float:
    """Peak resident memory of this process (CPU) or peak allocated CUDA memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mib()


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path) -> dict:
    """eval.py's work: rebuild the model from the checkpoint's own config, evaluate
    `cfg.dataset.split`, print the table, write `metrics.json` (and predictions when asked)."""
    check_values(cfg, EVAL_KEYS)
    device = resolve_device(cfg.device)
    model, checkpoint, trained_cfg = restore_model(cfg.checkpoint, device, cfg.eval.output_stride)
    if cfg.eval.output_stride is not None:
        log.info(
            "model run at output stride %d (trained at %s)",
            cfg.eval.output_stride,
            OmegaConf.select(trained_cfg, "model.backbone.output_stride", default="?"),
        )
    class_names = list(checkpoint["class_names"])

    _, val_transform = build_transforms(cfg.aug)
    dataset = build_dataset(cfg.dataset, cfg.dataset.split, val_transform)
    if list(dataset.class_names) != class_names:
        raise ConfigError(
            f"checkpoint={cfg.checkpoint} predicts {len(class_names)} classes {class_names[:4]}..., "
            f"but the chosen dataset has {dataset.num_classes} classes {list(dataset.class_names)[:4]}...: "
            "pass the dataset the model was trained on (e.g. dataset=camvid dataset.root=...)"
        )
    loader = build_eval_loader(dataset, cfg.batch_size, cfg.num_workers, device)
    precision = choose_precision(cfg.eval.precision, device, "eval.precision")
    machine = machine_info()
    log.info("precision %s (%s) on %s", precision.name, precision.reason, describe(machine))
    predictor = build_predictor(cfg.eval, model, len(class_names), device, precision)
    on_batch = _prediction_saver(cfg, dataset, checkpoint, run_dir) if cfg.eval.save_predictions else None

    start = time.perf_counter()
    metrics = evaluate(predictor, loader, len(class_names), device, description=f"eval {dataset.split}", on_batch=on_batch).compute()
    elapsed = time.perf_counter() - start
    log.info("%s split:\n%s", dataset.split, format_table(metrics, class_names))
    log.info(
        "%d images in %.1f s (%.2f images/s), mode %s, scales %s, flip %s, peak memory %.0f MiB",
        len(dataset), elapsed, len(dataset) / elapsed, cfg.eval.mode, list(cfg.eval.scales), cfg.eval.flip,
        peak_memory_mib(device),
    )
    result = {
        **metrics.as_dict(class_names),
        "num_images": len(dataset),
        "checkpoint": str(Path(cfg.checkpoint).resolve()),
        "split": dataset.split,
        "precision": precision._asdict(),
        "machine": machine,
    }
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    log.info("metrics written to %s", run_dir / "metrics.json")
    return result


def _prediction_saver(cfg: DictConfig, dataset, checkpoint: dict, run_dir: Path) -> BatchCallback:
    """A callback writing each batch's predictions under their dataset stems."""
    palette = checkpoint.get("palette") or dataset.palette or voc_colormap(dataset.num_classes)
    id_table = None
    if cfg.eval.format == "cityscapes":
        id_table = getattr(dataset, "train_id_to_id", None)
        if id_table is None:
            raise ConfigError("eval.format=cityscapes needs dataset=cityscapes (its train id -> id table)")
    elif cfg.eval.format is not None:
        raise ConfigError(f"eval.format={cfg.eval.format!r}: expected null or cityscapes")
    writer = PredictionWriter(run_dir, palette, id_table)

    def save(first_index: int, predictions: torch.Tensor) -> None:
        for offset, prediction in enumerate(predictions.cpu().numpy()):
            index = first_index + offset
            writer.write(dataset.stem(index), prediction, dataset.load(index)[0])

    return save
