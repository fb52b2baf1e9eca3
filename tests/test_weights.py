"""Starting from saved weights: matching by name and shape, the report, `model.init_from`."""

import logging

import pytest
import torch
from torch import nn

from segdil.engine.builders import build_model
from segdil.engine.checkpoint import save_checkpoint
from segdil.errors import CheckpointError, ConfigError
from segdil.models.weights import load_matching


def test_partial_match_is_loaded_and_reported(caplog) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    source = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 7, 1))
    state = {**source.state_dict(), "extra.weight": torch.zeros(1)}
    del state["1.running_var"]
    with caplog.at_level(logging.INFO, logger="segdil.models.weights"):
        reshaped = load_matching(model, state, "test-file")
    assert torch.equal(model[0].weight, source[0].weight)
    assert not torch.equal(model[2].bias[:2], source[2].bias[:2])
    assert reshaped == ["2.weight", "2.bias"]
    assert caplog.records[-1].levelno == logging.WARNING
    text = caplog.text
    assert "test-file: loaded 6 of the model's 9 tensors" in text
    assert "not in the file, left as initialised (1): 1.running_var" in text
    assert "in the file, not in the model, ignored (1): extra.weight" in text
    assert "2.weight (7, 4, 1, 1) -> (2, 4, 1, 1)" in text


def test_nothing_matching_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no tensor matches"):
        load_matching(nn.Conv2d(3, 4, 3), {"backbone.weight": torch.zeros(4, 3, 3, 3)}, "file")
    with pytest.raises(ConfigError, match="not a state dict"):
        load_matching(nn.Conv2d(3, 4, 3), {"model": {"weight": torch.zeros(1)}}, "file")


def _checkpoint(compose, tmp_path, num_classes: int):
    cfg = compose("train", ["model=dilated_resnet18_fcn", "model.backbone.width=8"])
    trained = build_model(cfg.model, num_classes)
    path = tmp_path / "trained.pt"
    names = [f"class{i}" for i in range(num_classes)]
    save_checkpoint(path, {"model": trained.state_dict(), "class_names": names, "config": "model: {}\n"})
    return cfg, trained, path


def test_init_from_same_classes_loads_everything(compose, tmp_path) -> None:
    cfg, trained, path = _checkpoint(compose, tmp_path, 3)
    cfg.model.init_from = str(path)
    model = build_model(cfg.model, 3).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images), trained.eval()(images))


def test_init_from_with_other_classes_reinitialises_the_classifier(compose, tmp_path, caplog) -> None:
    cfg, trained, path = _checkpoint(compose, tmp_path, 3)
    cfg.model.init_from = str(path)
    with caplog.at_level(logging.INFO, logger="segdil.models.weights"):
        model = build_model(cfg.model, 5)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, trained.backbone.layer4[1].conv2.weight)
    assert torch.equal(model.head[0].weight, trained.head[0].weight)  # the head's hidden conv
    assert model.head[4].weight.shape == (5, 16, 1, 1)
    assert "trained for 3 classes, this model predicts 5" in caplog.text
    assert "head.4.weight (3, 16, 1, 1) -> (5, 16, 1, 1)" in caplog.text


def test_pretrained_false_skips_weight_files(compose, tmp_path) -> None:
    """eval.py rebuilds a model whose init files may be gone: its checkpoint brings the weights."""
    cfg = compose("train", ["model=dilated_resnet18_fcn", "model.backbone.width=8"])
    cfg.model.init_from = str(tmp_path / "gone.pt")
    cfg.model.backbone.weights = str(tmp_path / "gone.pth")
    build_model(cfg.model, 3, pretrained=False)
    with pytest.raises(ConfigError, match="gone.pth"):
        build_model(cfg.model, 3)
    cfg.model.backbone.weights = None
    with pytest.raises(CheckpointError, match="gone.pt"):
        build_model(cfg.model, 3)
