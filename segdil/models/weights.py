"""Start a model from saved weights: copy what matches by name and shape, report the rest.

Used for `model.backbone.weights` (a torchvision ResNet state dict, from a file or by
torchvision's weight name) and `model.init_from` (a segdil checkpoint, or torchvision's FCN /
DeepLabV3 weights from a file or by weight name). A partial match is normal (a DRN stem, a
classifier for other classes), so it is logged in one block rather than raised; a file of
which nothing matches is an error.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_weight

from segdil.errors import ConfigError

log = logging.getLogger(__name__)

# torchvision's weight names (IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT) are upper-case identifiers;
# anything else given as model.backbone.weights is a file path.
WEIGHT_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def is_weight_name(spec: str) -> bool:
    return WEIGHT_NAME.fullmatch(spec) is not None and not Path(spec).exists()


def torchvision_resnet_state(name: str, depth: int) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights of ResNet-`depth` by weight name, through its own weights
    API: downloaded into torch hub's cache ($TORCH_HOME/hub/checkpoints) on first use, read from
    there afterwards, exactly as `torchvision.models.resnet50(weights=name)` does."""
    key = f"model.backbone.weights={name}"
    weights = weights_entry(f"ResNet{depth}_Weights", name, key, "its ImageNet ResNets have depths 18, 34, 50 and 101")
    return hub_state_dict(weights, key)


def weights_entry(enum: str, name: str, key: str, known: str) -> WeightsEnum:
    """torchvision's `enum.name` weights entry (e.g. ResNet50_Weights.IMAGENET1K_V2); an unknown
    enum or name is one ConfigError naming `key`, with `known` or the valid names."""
    try:
        return get_weight(f"{enum}.{name}")
    except ValueError:
        raise ConfigError(f"{key}: torchvision has no {enum}; {known}") from None
    except KeyError:
        choices = list(type(get_weight(f"{enum}.DEFAULT")).__members__)
        raise ConfigError(f"{key}: not a weight name of torchvision's {enum}; expected one of {choices} or a file path") from None


# torchvision.models.segmentation calls the parts of FCN and DeepLabV3 `backbone`, `classifier` and
# `aux_classifier`; the Segmentor calls them `backbone`, `head` and `aux_head`, with the same layers inside.
TORCHVISION_SEGMENTATION_PARTS = {"backbone.": "backbone.", "classifier.": "head.", "aux_classifier.": "aux_head."}

# The one layout torchvision publishes segmentation weights for: its ResNet at full width, strides
# of layer3 and layer4 replaced by dilation (replace_stride_with_dilation=[False, True, True]).
TORCHVISION_SEGMENTATION_BACKBONE = {"arch": "resnet", "width": 64, "output_stride": 8}


def segmentor_names(state: Any) -> Any:
    """A torchvision FCN / DeepLabV3 state dict under the Segmentor's names; other keys, and
    what is not a mapping (for `load_matching` to refuse), unchanged."""
    if not isinstance(state, Mapping):
        return state
    renamed = {}
    for key, value in state.items():
        prefix = next((part for part in TORCHVISION_SEGMENTATION_PARTS if key.startswith(part)), "")
        renamed[TORCHVISION_SEGMENTATION_PARTS.get(prefix, "") + key[len(prefix) :]] = value
    return renamed


def hub_state_dict(weights: WeightsEnum, key: str) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision weights entry, read from torch hub's cache
    ($TORCH_HOME/hub/checkpoints) and downloaded there first when it is missing; offline and
    uncached, one ConfigError says which file to put where."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    try:
        return weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except OSError as error:  # URLError (offline), a refused connection, a full disk
        raise ConfigError(
            f"{key}: {cached.name} is not in torch hub's cache and could not be downloaded ({error}); "
            f"put the file from {weights.url} at {cached} (or set TORCH_HOME)"
        ) from None


def torchvision_segmentation_state(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """torchvision's published weights `name` (COCO_WITH_VOC_LABELS_V1, DEFAULT) for the FCN or
    DeepLabV3 that `model` is, under the Segmentor's names; through torchvision's weights API,
    as `torchvision.models.segmentation.deeplabv3_resnet50(weights=name)` gets them."""
    key = f"model.init_from={name}"
    family = getattr(getattr(model, "head", None), "torchvision_model", None)
    backbone = getattr(model, "backbone", None)
    layout = {option: getattr(backbone, option, None) for option in TORCHVISION_SEGMENTATION_BACKBONE}
    if family is None or layout != TORCHVISION_SEGMENTATION_BACKBONE:
        raise ConfigError(
            f"{key}: torchvision publishes segmentation weights for its FCN and DeepLabV3 heads on "
            f"{TORCHVISION_SEGMENTATION_BACKBONE} backbones (model=fcn_resnet50, fcn_resnet101, deeplabv3_resnet50, "
            f"deeplabv3_resnet101); this model has head {family} on {layout}"
        )
    enum = f"{family}_ResNet{backbone.depth}_Weights"
    weights = weights_entry(enum, name, key, f"its {family} weights exist for depths 50 and 101")
    return segmentor_names(hub_state_dict(weights, key))


def _grouped(keys: list[str]) -> str:
    """`layer5.0.* (12), fc.weight`: keys grouped by their first two name parts, in order."""
    groups = Counter(".".join(key.split(".")[:2]) for key in keys)
    exact = set(keys)
    return ", ".join(prefix if prefix in exact else f"{prefix}.* ({count})" for prefix, count in groups.items())


def load_matching(module: nn.Module, state: Mapping[str, Any], source: str) -> list[str]:
    """Copy every tensor of `state` whose name and shape match `module`'s, log what was not.

    Returns the names present in both whose shapes differ (they keep their fresh
    initialisation). Raises ConfigError when `state` is not a state dict or nothing matches.
    """
    own = module.state_dict()
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{source}: not a state dict (expected a dict of tensor names to tensors)")
    matching = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    if not matching:
        raise ConfigError(
            f"{source}: no tensor matches the model by name and shape "
            f"(file keys look like {list(state)[:3]}, model keys like {list(own)[:3]})"
        )
    module.load_state_dict(matching, strict=False)

    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    reshaped = [key for key in state if key in own and key not in matching]
    lines = [f"{source}: loaded {len(matching)} of the model's {len(own)} tensors"]
    if missing:
        lines.append(f"  not in the file, left as initialised ({len(missing)}): {_grouped(missing)}")
    if unexpected:
        lines.append(f"  in the file, not in the model, ignored ({len(unexpected)}): {_grouped(unexpected)}")
    if reshaped:
        shapes = ", ".join(f"{key} {tuple(state[key].shape)} -> {tuple(own[key].shape)}" for key in reshaped)
        lines.append(f"  other shape in the file, left as initialised ({len(reshaped)}): {shapes}")
    log.log(logging.WARNING if len(lines) > 1 else logging.INFO, "\n".join(lines))
    return reshaped


def init_from_checkpoint(model: nn.Module, checkpoint: Mapping[str, Any], source: str) -> None:
    """Start `model` from a segdil checkpoint's weights (`model.init_from`).

    When the checkpoint was trained for another number of classes, the tensors whose shape
    depends on it (classifiers, a context module on the class scores) keep their fresh
    initialisation, and the log says so.
    """
    trained_classes = len(checkpoint.get("class_names", ()))
    num_classes = getattr(model, "num_classes", trained_classes)
    if trained_classes != num_classes:
        log.warning(
            "%s: trained for %d classes, this model predicts %d: the class-dependent tensors "
            "(listed below with their shapes) are re-initialised",
            source,
            trained_classes,
            num_classes,
        )
    load_matching(model, checkpoint["model"], source)
