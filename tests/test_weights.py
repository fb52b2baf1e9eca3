"""Starting from saved weights: matching by name and shape, the report, `model.init_from` (segdil
checkpoints, torchvision's FCN / DeepLabV3 from a file or by weight name)."""

import importlib.util
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import segmentation

from conftest import REPO
from segdil.engine.builders import build_model, build_transforms
from segdil.engine.checkpoint import save_checkpoint
from segdil.engine.evaluator import evaluate_checkpoint
from segdil.errors import CheckpointError, ConfigError
from segdil.models.weights import load_matching
from test_backbones import _no_network, seed_hub_cache
from trees import make_voc


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
    with pytest.raises(CheckpointError, match="model.backbone.weights=.*gone.pth: no such file"):
        build_model(cfg.model, 3)
    cfg.model.backbone.weights = None
    with pytest.raises(CheckpointError, match="gone.pt"):
        build_model(cfg.model, 3)


# --- torchvision's FCN and DeepLabV3: their state dicts load and give the same logits --------

# segdil model, torchvision builder, with torchvision's auxiliary head (aux_loss) or without
TORCHVISION_MODELS = [
    ("deeplabv3_resnet50", segmentation.deeplabv3_resnet50, True),
    ("deeplabv3_resnet101", segmentation.deeplabv3_resnet101, False),
    ("fcn_resnet50", segmentation.fcn_resnet50, False),
    ("fcn_resnet101", segmentation.fcn_resnet101, True),
]
IMAGES = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))


def randomised(factory, aux: bool, **kwargs) -> nn.Module:
    """torchvision's model with random weights (nothing downloaded) and random BatchNorm affine
    parameters and statistics, so that every tensor must land in its own place to match."""
    torch.manual_seed(0)
    model = factory(weights=None, weights_backbone=None, aux_loss=aux, **kwargs)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, 0.0, 0.1)
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def assert_same_model(ours: nn.Module, theirs: nn.Module) -> None:
    """Every tensor where torchvision has it (renamed), and identical logits in eval mode."""
    reference = theirs.state_dict()
    renamed = {"head": "classifier", "aux_head": "aux_classifier"}
    state = ours.state_dict()
    assert len(state) == len(reference)
    for key, tensor in state.items():
        part, rest = key.split(".", 1)
        assert torch.equal(tensor, reference[f"{renamed.get(part, part)}.{rest}"]), key
    with torch.no_grad():
        # The same operations in the same order on the same CPU: bit-identical, not merely close.
        assert torch.equal(ours.eval()(IMAGES), theirs(IMAGES)["out"])


def _model_cfg(compose, name: str, aux: bool, init_from: str):
    cfg = compose("train", [f"model={name}", f"model.aux_weight={0.5 if aux else 0}"]).model
    cfg.init_from = init_from
    return cfg


@pytest.mark.parametrize(("name", "factory", "aux"), TORCHVISION_MODELS)
def test_torchvision_segmentation_file_loads_through_init_from(compose, tmp_path, caplog, name, factory, aux) -> None:
    theirs = randomised(factory, aux)
    path = tmp_path / "torchvision.pth"
    torch.save(theirs.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="segdil.models.weights"):
        ours = build_model(_model_cfg(compose, name, aux, str(path)), 21)
    count = len(theirs.state_dict())
    assert f"loaded {count} of the model's {count} tensors" in caplog.text and caplog.records[-1].levelno == logging.INFO
    assert_same_model(ours, theirs)


def test_published_weights_load_by_name_from_the_hub_cache(compose, tmp_path, monkeypatch) -> None:
    """COCO_WITH_VOC_LABELS_V1 / DEFAULT through torchvision's weights API, from a pre-seeded
    cache: torch hub's download is replaced by an error, so nothing can be fetched."""
    theirs = randomised(segmentation.deeplabv3_resnet50, aux=True)
    seed_hub_cache(tmp_path, monkeypatch, lambda weights: theirs, segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1)
    for name in ("COCO_WITH_VOC_LABELS_V1", "DEFAULT"):
        assert_same_model(build_model(_model_cfg(compose, "deeplabv3_resnet50", True, name), 21), theirs)


def test_published_weights_without_the_aux_head_are_reported(compose, tmp_path, monkeypatch, caplog) -> None:
    theirs = randomised(segmentation.fcn_resnet50, aux=True)
    seed_hub_cache(tmp_path, monkeypatch, lambda weights: theirs, segmentation.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1)
    with caplog.at_level(logging.INFO, logger="segdil.models.weights"):
        ours = build_model(_model_cfg(compose, "fcn_resnet50", False, "DEFAULT"), 21)
    assert "in the file, not in the model, ignored (8): aux_head.0.* (1), aux_head.1.* (5), aux_head.4.* (2)" in caplog.text
    with torch.no_grad():
        assert torch.equal(ours.eval()(IMAGES), theirs(IMAGES)["out"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=deeplabv3_resnet50", "model.init_from=IMAGENET1K_V1"],
         r"not a weight name of torchvision's DeepLabV3_ResNet50_Weights; expected one of \['COCO_WITH_VOC_LABELS_V1', 'DEFAULT'\]"),
        (["model=deeplabv3_resnet18", "model.init_from=DEFAULT"], "torchvision has no DeepLabV3_ResNet18_Weights"),
        (["model=drn_c26", "model.init_from=DEFAULT"], "torchvision publishes segmentation weights for its FCN and DeepLabV3"),
        (["model=fcn_resnet50", "model.backbone.output_stride=16", "model.init_from=DEFAULT"], "'output_stride': 16"),
    ],
)
def test_weight_names_that_do_not_fit_the_model(compose, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(compose("train", overrides).model, 21)


def test_uncached_published_weights_offline_name_the_file_and_place(compose, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(ConfigError) as error:
        build_model(_model_cfg(compose, "fcn_resnet101", False, "COCO_WITH_VOC_LABELS_V1"), 21)
    message, cached = str(error.value), tmp_path / "hub" / "checkpoints" / "fcn_resnet101_coco-7ecb50ca.pth"
    assert "\n" not in message and message.startswith("model.init_from=COCO_WITH_VOC_LABELS_V1: fcn_resnet101_coco-7ecb50ca.pth is not in torch hub's cache")
    assert f"put the file from https://download.pytorch.org/models/fcn_resnet101_coco-7ecb50ca.pth at {cached}" in message


def test_eval_scores_torchvision_published_model_on_voc(compose, tmp_path, monkeypatch) -> None:
    """scripts/import_weights.py turns COCO_WITH_VOC_LABELS_V1 into a checkpoint, and eval.py's
    code path predicts on VOC exactly what torchvision's model predicts."""
    theirs = randomised(segmentation.deeplabv3_resnet50, aux=True)
    seed_hub_cache(tmp_path, monkeypatch, lambda weights: theirs, segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1)
    spec = importlib.util.spec_from_file_location("import_weights", REPO / "scripts" / "import_weights.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    checkpoint = tmp_path / "deeplabv3_resnet50_coco.pt"
    script.import_weights(
        compose("scripts/import_weights", ["model=deeplabv3_resnet50", "model.init_from=COCO_WITH_VOC_LABELS_V1", "dataset=voc", f"out={checkpoint}"])
    )

    make_voc(tmp_path / "voc", {"val": ["v1", "v2"]}, {"v1": 3, "v2": 12})
    cfg = compose("eval", [f"checkpoint={checkpoint}", "dataset=voc", f"dataset.root={tmp_path / 'voc'}", "eval.save_predictions=true"])
    result = evaluate_checkpoint(cfg, tmp_path / "eval")
    assert result["num_images"] == 2 and 0.0 <= result["mIoU"] <= 1.0
    _, val_transform = build_transforms(cfg.aug)
    for stem in ("v1", "v2"):
        image = np.array(Image.open(tmp_path / f"voc/VOCdevkit/VOC2012/JPEGImages/{stem}.jpg"))
        tensor = val_transform(image=image, mask=np.zeros(image.shape[:2], np.uint8))["image"][None]
        with torch.no_grad():
            expected = theirs(tensor)["out"].argmax(1)[0].numpy()
        assert np.array_equal(np.array(Image.open(tmp_path / f"eval/predictions/{stem}.png")), expected)
