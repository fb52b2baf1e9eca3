"""The Segmentor composes backbone -> [context] -> head -> [context] and returns logits at input
size; the backbone is anything that meets `segdil.models.contract.Backbone`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPPPooling
from torchvision.ops import Conv2dNormActivation

from segdil.errors import ConfigError
from segdil.models.contract import Backbone, FeatureInfo
from segdil.models.heads import FeatureHead, fcn_head

# Where the context module runs: on the class scores after the head (Yu & Koltun), or on the
# backbone's last feature before the head.
CONTEXT_PLACEMENTS = ("scores", "features")

Outputs = torch.Tensor | dict[str, torch.Tensor]


def _upsample(scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


class Segmentor(nn.Module):
    """Backbone features -> [context on features] -> head -> [context on scores] -> bilinear upsampling.

    `forward` returns the logits (N x C x H x W at the input's size), except in training mode
    with an auxiliary head: then `{"out": logits, "aux": aux_logits}` for segdil.losses.WithAuxiliary.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: nn.Module,
        num_classes: int,
        context: nn.Module | None = None,
        context_placement: str = "scores",
        aux_head: nn.Module | None = None,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.context = context
        self.aux_head = aux_head
        self.num_classes, self.context_placement, self.aux_weight = num_classes, context_placement, aux_weight
        self.frozen: tuple[str, ...] = ()
        # torchvision's ASPP applies BatchNorm to the 1x1 output of its image-pooling branch:
        # in training mode that needs two samples or more (one value per channel cannot be normalised).
        self._needs_two_samples = any(isinstance(module, ASPPPooling) for module in self.modules())

    def freeze(self, names: Sequence[str]) -> None:
        """Stop training the named parts (`model.freeze`, e.g. [backbone] for a stage of a staged
        schedule): their parameters get no gradient and they stay in eval mode, so that BatchNorm
        statistics and dropout do not change either."""
        parts = [name for name, _ in self.named_children()]
        unknown = [name for name in names if name not in parts]
        if unknown:
            raise ConfigError(f"model.freeze={list(names)}: {unknown[0]!r} is not a part of this model; expected names from {parts}")
        self.frozen = tuple(names)
        for name in self.frozen:
            getattr(self, name).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Segmentor:
        """nn.Module.train, except that frozen parts stay in eval mode."""
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    def forward(self, images: torch.Tensor) -> Outputs:
        if self.training and self._needs_two_samples and images.shape[0] < 2:
            raise ConfigError(
                "training on a batch of 1 image: the image-pooling branch of ASPP batch-normalises "
                "one value per channel; use data.batch_size >= 2"
            )
        features = self.backbone(images)
        if self.context is not None and self.context_placement == "features":
            features = {**features, "out": self.context(features["out"])}
        scores = self.head(features)
        if self.context is not None and self.context_placement == "scores":
            scores = self.context(scores)
        logits = _upsample(scores, images.shape[-2:])
        if self.training and self.aux_head is not None:
            return {"out": logits, "aux": _upsample(self.aux_head(features), images.shape[-2:])}
        return logits

    def check_front_end_frozen(self) -> None:
        """Raise unless everything before the context module is frozen and nothing after it reads
        other features: only then can its input be computed once and cached (`trainer.frozen_cache`)."""
        before = ("backbone", "head") if self.context_placement == "scores" else ("backbone",)
        problem = None
        if self.context is None:
            problem = "this model has no context module"
        elif any(name not in self.frozen for name in before):
            problem = f"the parts before the context module must be frozen: model.freeze={list(before)}"
        elif self.aux_head is not None:
            problem = "the auxiliary head's loss needs the backbone's layer3 each step: set model.aux_weight=0"
        elif self.context_placement == "features" and not (isinstance(self.head, FeatureHead) and self.head.feature == "out"):
            problem = "the head must read the backbone's last feature only (FCN or DeepLabv3 heads)"
        if problem:
            raise ConfigError(f"trainer.frozen_cache=true trains the context module on the frozen front end's outputs: {problem}")

    def front_end(self, images: torch.Tensor) -> torch.Tensor:
        """What the context module receives: the class scores, or the backbone's last feature
        with `context_placement=features`."""
        features = self.backbone(images)
        return self.head(features) if self.context_placement == "scores" else features["out"]

    def from_front_end(self, front: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """The rest of `forward` from `front_end`'s output: logits at `size` (the images' height
        and width). For a model with a context module and no auxiliary head in training."""
        if self.context_placement == "scores":
            scores = self.context(front)
        else:
            scores = self.head({"out": self.context(front)})
        return _upsample(scores, size)


def _feature_context(
    context: Callable[[int], nn.Module], feature: FeatureInfo, width: int | None
) -> tuple[nn.Module, FeatureInfo]:
    """The context module for the backbone's last feature, after an optional 1x1 conv-BN-ReLU
    projection to `width` channels (the module costs 9 x C^2 per layer, 2.4M at C = 512)."""
    if width is None:
        return context(feature.channels), feature
    projection = Conv2dNormActivation(feature.channels, width, kernel_size=1)
    return nn.Sequential(projection, context(width)), FeatureInfo(width, feature.stride)


def build_segmentor(
    num_classes: int,
    backbone: Backbone,
    head: Callable[[Mapping[str, FeatureInfo], int], nn.Module],
    context: Callable[[int], nn.Module] | None = None,
    context_placement: str = "scores",
    context_width: int | None = None,
    aux_weight: float = 0.0,
    freeze: Sequence[str] = (),
    name: str = "",
) -> Segmentor:
    """Assemble a Segmentor; `head` and `context` are factories (Hydra `_partial_` configs)
    that receive what is only known here: the features' channels and strides, and the number
    of classes (the context module receives its channel count).

    `aux_weight > 0` adds torchvision's FCN head on the backbone's `aux_feature` (layer3 of a ResNet;
    used in training only) whose loss is weighted by `aux_weight` (segdil.losses.WithAuxiliary). `freeze` names parts
    (backbone, head, context, aux_head) that are not trained (see `Segmentor.freeze`).
    """
    if not isinstance(backbone, Backbone):
        raise ConfigError(
            f"model.backbone: {type(backbone).__name__} is not a backbone; expected a module with feature_info, "
            "output_stride and aux_feature (segdil.models.contract.Backbone)"
        )
    if context_placement not in CONTEXT_PLACEMENTS:
        raise ConfigError(f"model.context_placement={context_placement!r}: expected one of {list(CONTEXT_PLACEMENTS)}")
    if context_width is not None and (context_placement != "features" or context_width < 1):
        raise ConfigError(
            f"model.context_width={context_width}: expected null, or a positive width with context_placement=features"
        )
    if aux_weight < 0:
        raise ConfigError(f"model.aux_weight={aux_weight}: expected 0 (no auxiliary head) or a positive weight")

    feature_info = dict(backbone.feature_info)
    context_module = None
    if context is not None and context_placement == "scores":
        context_module = context(num_classes)
    elif context is not None:
        context_module, feature_info["out"] = _feature_context(context, feature_info["out"], context_width)
    if aux_weight > 0 and backbone.aux_feature is None:
        raise ConfigError(f"model.aux_weight={aux_weight}: this backbone has no feature for an auxiliary head (aux_feature)")
    aux_head = fcn_head(backbone.feature_info, num_classes, feature=backbone.aux_feature) if aux_weight > 0 else None
    segmentor = Segmentor(
        backbone,
        head(feature_info, num_classes),
        num_classes,
        context_module,
        context_placement,
        aux_head,
        aux_weight,
    )
    segmentor.freeze(freeze)
    segmentor.name = name
    return segmentor
