"""Turn config nodes into objects: device, model, transforms, datasets. Shared by train and eval."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from segdil.data.base import SegmentationDataset, Transform
from segdil.engine.checkpoint import is_checkpoint, load_checkpoint, load_model_state
from segdil.loading import read_weights_file
from segdil.errors import ConfigError, user_error
from segdil.losses import WithAuxiliary, median_frequency_weights
from segdil.models.weights import (
    init_from_checkpoint,
    is_weight_name,
    load_matching,
    segmentor_names,
    torchvision_segmentation_state,
)

log = logging.getLogger("segdil")


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: CUDA is not available here (use auto or cpu)")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device={name}: expected auto, cpu, cuda or cuda:N")
    return torch.device(name)


def instantiate_or_explain(cfg: dict, **kwargs):
    """Hydra's instantiate, with a user's mistake (a bad value, a missing file) raised as its own
    one-line error instead of Hydra's wrapped traceback."""
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as error:
        cause = user_error(error)
        if cause is None:
            raise
        raise cause from None


def start_from(model: nn.Module, init_from: str) -> None:
    """Apply `model.init_from`: a segdil checkpoint (train.py's), a state-dict file of torchvision's
    FCN / DeepLabV3 (or of a Segmentor), or a torchvision weight name (COCO_WITH_VOC_LABELS_V1,
    DEFAULT) for the torchvision model this one is. What matches by name and shape is loaded."""
    source = f"model.init_from={init_from}"
    if is_weight_name(init_from):
        load_matching(model, torchvision_segmentation_state(model, init_from), source)
        return
    expected = "expected a checkpoint written by train.py, a torchvision FCN / DeepLabV3 state dict or a torchvision weight name"
    state = read_weights_file(init_from, "model.init_from", expected)
    if is_checkpoint(state):
        init_from_checkpoint(model, state, source)
    else:
        load_matching(model, segmentor_names(state), source)


def build_model(model_cfg: DictConfig, num_classes: int, pretrained: bool = True) -> nn.Module:
    """Instantiate `cfg.model` (its `_target_` is a factory such as `build_segmentor`), then
    start it from `model.init_from` (see `start_from`) when set.

    `pretrained=False` skips `model.backbone.weights` and `model.init_from`: for a model whose
    weights come from its own checkpoint next (eval.py), those files need not exist any more.
    """
    cfg = OmegaConf.to_container(model_cfg, resolve=True)
    init_from = cfg.pop("init_from", None)
    if not pretrained and isinstance(cfg.get("backbone"), dict) and "weights" in cfg["backbone"]:
        cfg["backbone"]["weights"] = None
    model = instantiate_or_explain(cfg, num_classes=num_classes, _convert_="all")
    if pretrained and init_from:
        start_from(model, str(init_from))
    elif pretrained and "head" in (cfg.get("freeze") or ()):
        log.warning(
            "model.freeze=%s with model.init_from=null: the frozen head keeps its random initialisation; "
            "a staged recipe starts from its front end (model.init_from=RUN/checkpoints/last.pt)",
            list(cfg["freeze"]),
        )
    return model


def build_transforms(aug_cfg: DictConfig) -> tuple[Transform, Transform]:
    """The (train, val) albumentations pipelines named by `cfg.aug`."""
    return instantiate(aug_cfg.train), instantiate(aug_cfg.val)


def build_loss(loss_cfg: DictConfig, train_set: SegmentationDataset, aux_weight: float = 0.0) -> nn.Module:
    """Instantiate `cfg.loss` (its `_target_` is a loss of (logits, target)), with its `class_weights`
    resolved on the train split when it has that key; wrapped to weigh the auxiliary head's loss by
    `aux_weight` when the model has one."""
    cfg = OmegaConf.to_container(loss_cfg, resolve=True)
    if "class_weights" in cfg:
        cfg["class_weights"] = class_weights(cfg["class_weights"], train_set)
    loss = instantiate_or_explain(cfg)
    return WithAuxiliary(loss, aux_weight) if aux_weight > 0 else loss


def class_weights(weights: str | list | None, train_set: SegmentationDataset) -> torch.Tensor | None:
    """`loss.class_weights`: null, a list with one weight per class, or median_frequency (computed on
    the train split)."""
    if weights is None:
        return None
    num_classes = train_set.num_classes
    if weights == "median_frequency":
        return median_frequency_weights((train_set.load_mask(i) for i in range(len(train_set))), num_classes)
    if isinstance(weights, str) or len(weights) != num_classes:
        given = repr(weights) if isinstance(weights, str) else f"{len(weights)} values"
        raise ConfigError(f"loss.class_weights has {given}: expected {num_classes} (one per class), median_frequency or null")
    return torch.tensor(list(weights), dtype=torch.float32)


def at_output_stride(model_cfg: DictConfig, output_stride: int | None) -> DictConfig:
    """The model config run at another output stride (None: unchanged). The weights do not depend
    on it, so a network trained at 16 can be evaluated at 8, as DeepLabv3 does; the builder scales
    ASPP rates to the new stride, and the rest of the head keeps its dilations."""
    if output_stride is None:
        return model_cfg
    return OmegaConf.merge(model_cfg, {"backbone": {"output_stride": output_stride}})


def restore_model(
    checkpoint_path: str | Path, device: torch.device, output_stride: int | None = None
) -> tuple[nn.Module, dict, DictConfig]:
    """(model in eval mode on `device`, the checkpoint dict, the config it was trained with),
    optionally rebuilt at another output stride than it was trained at."""
    checkpoint = load_checkpoint(checkpoint_path)
    trained_cfg = OmegaConf.create(checkpoint["config"])
    model_cfg = at_output_stride(trained_cfg.model, output_stride)
    model = build_model(model_cfg, len(checkpoint["class_names"]), pretrained=False)
    load_model_state(model, checkpoint["model"], checkpoint_path)
    return model.to(device).eval(), checkpoint, trained_cfg
