"""The optimizer from config, with learning-rate and weight-decay multipliers for biases and
normalisation layers (mmsegmentation's `paramwise_cfg`, Caffe's per-blob `lr_mult` / `decay_mult`).

torch.optim takes parameter groups but has no rule that sorts a model's parameters into them;
mmcv's DefaultOptimWrapperConstructor does, inside mmcv's registry machinery. These few lines
apply the same rule to any torch.optim class a config names:
  - a parameter of a normalisation layer (BatchNorm, GroupNorm, LayerNorm, InstanceNorm), weight or
    bias, gets weight decay x `norm_decay_mult` and the base learning rate;
  - any other parameter named `bias` gets learning rate x `bias_lr_mult` and decay x `bias_decay_mult`;
  - everything else keeps the optimizer's own settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from segdil.errors import ConfigError

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Multipliers:
    """`optim_groups`: factors on the optimizer's lr and weight decay per kind of parameter."""

    bias_lr_mult: float = 1.0
    bias_decay_mult: float = 1.0
    norm_decay_mult: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"optim_groups.{field.name}={value!r}: expected a number >= 0 (1.0 = unchanged)")

    @property
    def neutral(self) -> bool:
        return all(getattr(self, field.name) == 1.0 for field in fields(self))

    def of(self, module: nn.Module, name: str) -> tuple[float, float]:
        """(lr multiplier, decay multiplier) of the parameter `name` held directly by `module`."""
        if isinstance(module, NORM_LAYERS):
            return 1.0, self.norm_decay_mult
        if name == "bias":
            return self.bias_lr_mult, self.bias_decay_mult
        return 1.0, 1.0


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, multipliers: Multipliers) -> list[dict[str, Any]]:
    """The model's parameters (each once, in `model.parameters()` order within a group) in one
    group per (lr, decay) pair, the group of the unchanged settings first, so that
    `param_groups[0]["lr"]` stays the base learning rate that logs show."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {(1.0, 1.0): []}
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            groups.setdefault(multipliers.of(module, name), []).append(parameter)
    return [
        {"params": params, "lr": lr * lr_mult, "weight_decay": weight_decay * decay_mult}
        for (lr_mult, decay_mult), params in groups.items()
        if params
    ]


def build_optimizer(optim_cfg: DictConfig, model: nn.Module, groups_cfg: Mapping[str, Any] | None) -> torch.optim.Optimizer:
    """`optim_cfg` (a torch.optim `_target_`) over the model's parameters. With every multiplier
    at 1 this is exactly one group of `model.parameters()`, as before the option existed (so
    checkpoints of either kind resume); otherwise the groups of `parameter_groups`."""
    settings = OmegaConf.to_container(groups_cfg, resolve=True) if isinstance(groups_cfg, DictConfig) else dict(groups_cfg or {})
    unknown = sorted(set(settings) - {field.name for field in fields(Multipliers)})
    if unknown:
        raise ConfigError(f"optim_groups.{unknown[0]}: no such key; expected bias_lr_mult, bias_decay_mult or norm_decay_mult")
    multipliers = Multipliers(**settings)
    if multipliers.neutral:
        return instantiate(optim_cfg, params=model.parameters())
    weight_decay = OmegaConf.select(optim_cfg, "weight_decay", default=0.0) or 0.0
    groups = parameter_groups(model, optim_cfg.lr, weight_decay, multipliers)
    # instantiate would turn the groups into OmegaConf nodes; the partial takes them as they are.
    return instantiate(optim_cfg, _partial_=True)(groups)
