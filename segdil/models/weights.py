"""Start a model from saved weights: copy what matches by name and shape, report the rest.

Used for `model.backbone.weights` (a torchvision ResNet state dict) and `model.init_from` (a
segdil checkpoint). A partial match is normal (a DRN stem, a classifier for other classes), so
it is logged in one block rather than raised; a file of which nothing matches is an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from segdil.errors import ConfigError

log = logging.getLogger(__name__)


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
