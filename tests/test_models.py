"""Every model config composes, builds and returns logits at the input size."""

import pytest
import torch

from conftest import CONFIGS
from segdil.engine.builders import build_model

MODEL_CONFIGS = sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_config_builds_and_runs(compose, name: str) -> None:
    cfg = compose("train", [f"model={name}", "model.backbone.width=8"])
    model = build_model(cfg.model, num_classes=5).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 50, 70))
    assert logits.shape == (2, 5, 50, 70)
    assert model.name == name


def test_context_model_differs_from_fcn_only_by_context(compose) -> None:
    fcn = build_model(compose("train", ["model=dilated_resnet18_fcn"]).model, 11)
    context = build_model(compose("train", ["model=dilated_resnet18_context"]).model, 11)
    extra = sum(p.numel() for p in context.parameters()) - sum(p.numel() for p in fcn.parameters())
    assert extra == 7 * (9 * 11 * 11 + 11) + 11 * 11 + 11
    assert fcn.context is None
