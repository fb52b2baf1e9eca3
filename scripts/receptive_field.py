"""Receptive field of a configured model: `python scripts/receptive_field.py model=NAME [overrides]`.

Composes `configs/scripts/receptive_field.yaml` (the training config plus `rf.*`) with Hydra overrides
as train.py takes them, builds the model and prints its summary (parameters, GFLOPs, output
stride), the analytic table (one row per convolution, pooling or resizing, in forward order)
and the empirical figures: non-zero extent and 95 % square of the gradient of the central
output pixel, and the gridding fraction. See segdil/receptive_field.py for the method.
`rf.weights=model rf.frames=N` measures a trained model (model.init_from=...) on N frames of
the dataset's validation split instead of a probe input.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's segdil, also when another one is installed

import segdil  # noqa: E402, F401  (sets up the environment before albumentations is imported)
import torch  # noqa: E402
from hydra.utils import get_class  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from segdil.cli import compose_or_exit, user_errors  # noqa: E402
from segdil.data.checks import evenly_spaced  # noqa: E402
from segdil.data.loader import build_dataset  # noqa: E402
from segdil.engine.builders import build_model, build_transforms  # noqa: E402
from segdil.errors import ConfigError  # noqa: E402
from segdil.models.summary import forward_gflops  # noqa: E402
from segdil.receptive_field import format_empirical, format_layers, measure_receptive_field  # noqa: E402


def real_frames(cfg: DictConfig) -> torch.Tensor:
    """`rf.frames` evenly spaced images of the dataset's validation split, as the model sees
    them there (the val transform: aug.val_scale, normalisation)."""
    if cfg.rf.weights != "model":
        raise ConfigError(f"rf.frames={cfg.rf.frames}: real frames probe the model's own weights; set rf.weights=model")
    dataset = build_dataset(cfg.dataset, cfg.dataset.val_split, build_transforms(cfg.aug)[1])
    return torch.stack([dataset[int(index)][0] for index in evenly_spaced(len(dataset), cfg.rf.frames)])


def report(cfg: DictConfig) -> str:
    """The text the script prints for a composed `receptive_field` config."""
    num_classes = cfg.rf.num_classes or len(get_class(cfg.dataset._target_).class_names)
    # Structural probes ignore weights: skip loading model.backbone.weights / model.init_from.
    model = build_model(cfg.model, num_classes, pretrained=cfg.rf.weights == "model")
    frames = real_frames(cfg) if cfg.rf.frames else None
    rf = measure_receptive_field(model, cfg.rf.size, cfg.rf.weights, cfg.rf.global_size, frames)
    side = cfg.rf.global_size
    parameters = sum(p.numel() for p in model.parameters())
    return (
        f"model {cfg.model.name}: {parameters / 1e6:.2f}M parameters, {num_classes} classes | "
        f"{forward_gflops(model, (side, side)):.1f} GFLOPs forward at {side}x{side} | "
        f"output stride {rf.analytic.output_stride}\n\n"
        f"{format_layers(rf.analytic.layers)}\n\n{format_empirical(rf)}"
    )


def main(overrides: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = compose_or_exit(REPO / "configs", "scripts/receptive_field", overrides)
    with user_errors():
        print(report(cfg))


if __name__ == "__main__":
    main(sys.argv[1:])
