"""Predict images without labels: a checkpoint plus an image or a folder -> colour masks, overlays."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError

from segdil.engine.builders import resolve_device, restore_model
from segdil.engine.evaluator import build_predictor
from segdil.engine.prediction_files import PredictionWriter
from segdil.errors import DataError
from segdil.progress import progress_bar
from segdil.data.labels import voc_colormap

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            return images
        raise DataError(f"input={path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    raise DataError(f"input={path}: no such file or folder")


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path}: cannot be read as an image ({error})") from None


@torch.no_grad()
def predict_images(cfg: DictConfig, run_dir: Path) -> int:
    """Write predictions/, color/ and overlay/ for every input image into `run_dir`; the
    images are preprocessed with the checkpoint's own validation pipeline."""
    device = resolve_device(cfg.device)
    model, checkpoint, trained_cfg = restore_model(cfg.checkpoint, device, cfg.eval.output_stride)
    transform = instantiate(trained_cfg.aug.val)
    num_classes = len(checkpoint["class_names"])
    predictor = build_predictor(cfg.eval, model, num_classes, device)
    writer = PredictionWriter(run_dir, checkpoint.get("palette") or voc_colormap(num_classes))
    paths = list_images(Path(cfg.input))
    for path in progress_bar(paths, desc="predict"):
        image = read_rgb(path)
        tensor = transform(image=image)["image"].unsqueeze(0).to(device)
        prediction = predictor(tensor).argmax(dim=1)[0].cpu().numpy()
        writer.write(path.stem, prediction, image)
    log.info("%d image(s) predicted: colour masks in %s, overlays in %s", len(paths), run_dir / "color", run_dir / "overlay")
    return len(paths)
