"""Turn config nodes into objects: device, model, transforms, datasets. Shared by train and eval."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from segdil.data.base import Transform
from segdil.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: CUDA is not available here (use auto or cpu)")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device={name}: expected auto, cpu, cuda or cuda:N")
    return torch.device(name)


def build_model(model_cfg: DictConfig, num_classes: int) -> nn.Module:
    """Instantiate `cfg.model` (its `_target_` is a factory such as `build_segmentor`)."""
    return instantiate(model_cfg, num_classes=num_classes, _convert_="all")


def build_transforms(aug_cfg: DictConfig) -> tuple[Transform, Transform]:
    """The (train, val) albumentations pipelines named by `cfg.aug`."""
    return instantiate(aug_cfg.train), instantiate(aug_cfg.val)
