"""Every model config composes, builds and returns logits at the input size."""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONFIGS
from segdil.engine.builders import build_model, restore_model
from segdil.engine.checkpoint import save_checkpoint

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


def _dilations(module: torch.nn.Module) -> list[int]:
    return [conv.dilation[0] for conv in module.modules() if isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3)]


def test_a_checkpoint_runs_at_another_output_stride(compose, tmp_path) -> None:
    """eval.output_stride: an ASPP network trained at 16 is rebuilt at 8 with the same weights, its
    backbone's last stages and ASPP rates doubled (DeepLabv3's train at 16, evaluate at 8)."""
    cfg = compose("train", ["model=deeplabv3_resnet18", "model.backbone.width=8", "model.backbone.output_stride=16"])
    trained = build_model(cfg.model, num_classes=5).eval()
    path = tmp_path / "os16.pt"
    save_checkpoint(path, {"model": trained.state_dict(), "class_names": list("abcde"), "config": OmegaConf.to_yaml(cfg)})
    images = torch.randn(1, 3, 64, 64)

    as_trained, _, trained_cfg = restore_model(path, torch.device("cpu"))
    denser, _, _ = restore_model(path, torch.device("cpu"), output_stride=8)
    assert trained_cfg.model.backbone.output_stride == 16
    assert denser.backbone.output_stride == 8 and denser.backbone.feature_info["out"].stride == 8
    assert _dilations(denser.head) == [2 * d for d in _dilations(as_trained.head) if d > 1] + [1]  # ASPP 12, 24, 36; fuse conv 1
    assert _dilations(denser.backbone.layer4) == [2 * d for d in _dilations(as_trained.backbone.layer4)]
    for name, tensor in as_trained.state_dict().items():
        assert torch.equal(denser.state_dict()[name], tensor), name
    with torch.no_grad():
        assert torch.equal(as_trained(images), trained(images))
        logits = denser(images)
        assert logits.shape == (1, 5, 64, 64) and not torch.allclose(logits, trained(images))
