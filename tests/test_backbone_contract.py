"""The backbone contract: a toy backbone, one class and one config node, trains and evaluates in the
framework without any other file knowing of it."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import TINY_TRAIN_OVERRIDES
from segdil.engine.builders import at_output_stride, build_model
from segdil.engine.trainer import Trainer
from segdil.errors import ConfigError
from segdil.models.contract import Backbone, FeatureInfo


class ToyBackbone(nn.Module):
    """Two strided convolutions and a dilated one: features at stride 2 and `output_stride`."""

    def __init__(self, output_stride: int = 4, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        deep_stride = 2 if output_stride == 4 else 1  # stride 2 reaches 4 by striding, else dilates
        dilation = 1 if output_stride == 4 else 2
        self.deep = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=deep_stride, padding=dilation, dilation=dilation), nn.ReLU()
        )
        self.output_stride = output_stride
        self.feature_info = {"stem": FeatureInfo(width, 2), "deep": FeatureInfo(2 * width, output_stride)}
        self.feature_info["out"] = self.feature_info["deep"]
        self.aux_feature = "stem"

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        stem = self.stem(images)
        deep = self.deep(stem)
        return OrderedDict(stem=stem, deep=deep, out=deep)


def toy_model_cfg(compose, *overrides: str):
    cfg = compose("train", [*TINY_TRAIN_OVERRIDES, "model=tiny_context", *overrides])
    cfg.model.backbone = OmegaConf.create({"_target_": f"{__name__}.ToyBackbone", "output_stride": 4, "width": 8})
    return cfg


def test_a_toy_backbone_meets_the_contract_and_trains(compose, tmp_path) -> None:
    assert isinstance(ToyBackbone(), Backbone)
    cfg = toy_model_cfg(compose, "model.aux_weight=0.4", "trainer.max_iters=2", "trainer.val_every=2")
    trainer = Trainer(cfg, tmp_path)
    assert trainer.model.aux_head.feature == "stem"  # the aux head reads the backbone's aux_feature
    summary = trainer.fit()
    assert summary["iterations"] == 2 and 0.0 <= summary["final"]["mIoU"] <= 1.0
    assert (tmp_path / "checkpoints/best.pt").is_file()


def test_a_toy_backbone_runs_at_another_output_stride_with_the_same_weights(compose) -> None:
    model_cfg = toy_model_cfg(compose).model
    trained = build_model(model_cfg, num_classes=5).eval()
    denser = build_model(at_output_stride(model_cfg, 2), num_classes=5).eval()
    denser.load_state_dict(trained.state_dict())
    assert denser.backbone.feature_info["out"].stride == 2
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert denser(images).shape == trained(images).shape == (1, 5, 32, 32)


def test_a_module_without_the_contract_is_refused(compose) -> None:
    cfg = toy_model_cfg(compose).model
    cfg.backbone = OmegaConf.create({"_target_": "torch.nn.Identity"})
    with pytest.raises(ConfigError, match="Identity is not a backbone; expected a module with feature_info"):
        build_model(cfg, num_classes=5)
