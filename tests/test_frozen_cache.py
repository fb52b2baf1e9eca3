"""trainer.frozen_cache: the context module trained on the frozen front end's cached outputs."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from conftest import TINY_TRAIN_OVERRIDES
from segdil.data.loader import build_dataset
from segdil.engine.builders import build_model
from segdil.engine.checkpoint import load_checkpoint
from segdil.engine.trainer import Trainer
from segdil.errors import ConfigError

SMALL = ["model.backbone.width=8"]
STAGE_TWO = [*TINY_TRAIN_OVERRIDES, "model=tiny_context", "model.freeze=[backbone,head]", "trainer.frozen_cache=true"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=dilated_resnet18_context", "model.context.residual=false"],
        ["model=dilated_resnet18_feature_context"],
        ["model=dilated_resnet18_feature_context", "model.context_width=null"],
    ],
    ids=["scores", "features projected", "features"],
)
def test_front_end_then_the_rest_is_the_whole_model(compose, overrides) -> None:
    model = build_model(compose("train", [*overrides, *SMALL]).model, 5).eval()
    images = torch.rand(2, 3, 67, 45)  # sizes that stride 8 does not divide
    with torch.no_grad():
        whole = model(images)
        staged = model.from_front_end(model.front_end(images), images.shape[-2:])
    assert staged.shape == whole.shape == (2, 5, 67, 45)
    assert torch.allclose(staged, whole, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (["model=dilated_resnet18_fcn"], "this model has no context module"),
        (["model=dilated_resnet18_context", "model.freeze=[backbone]"], "model.freeze=['backbone', 'head']"),
        (["model=dilated_resnet18_context", "model.freeze=[backbone,head]", "model.aux_weight=0.4"], "model.aux_weight=0"),
        (["model=deeplabv3plus_resnet50", "model.backbone.width=8", "model.context_placement=features",
          "model.context={_target_: segdil.models.context.ContextModule, _partial_: true}", "model.freeze=[backbone]"],
         "the head must read the backbone's last feature only"),
    ],
    ids=["no module", "head trained", "aux head", "two-feature head"],
)
def test_the_cache_needs_a_frozen_front_end(compose, overrides, problem) -> None:
    model = build_model(compose("train", [*SMALL, *overrides]).model, 5)
    with pytest.raises(ConfigError) as error:
        model.check_front_end_frozen()
    assert str(error.value).startswith("trainer.frozen_cache=true trains the context module on the frozen front end's outputs: ")
    assert problem in str(error.value)


def test_the_cache_holds_the_front_end_on_the_unaugmented_images(compose, tmp_path) -> None:
    cfg = compose("train", [*STAGE_TWO, "aug=basic"])
    trainer = Trainer(cfg, tmp_path)
    cache = trainer.train_loader.dataset
    plain = build_dataset(cfg.dataset, cfg.dataset.train_split, trainer.val_transform)
    assert len(cache) == len(plain) == 16
    model = trainer.model.train()  # frozen parts stay in eval mode; the module has no BatchNorm
    for index in (0, 15):
        image, mask = plain[index]
        with torch.no_grad():
            assert torch.allclose(cache.fronts[index], model.front_end(image[None])[0], atol=1e-6)
            # What a cached step trains equals the whole model on the image.
            assert torch.allclose(trainer.net(cache.fronts[index : index + 1]), model(image[None]), atol=1e-5)
        assert torch.equal(cache.masks[index], mask)


def test_stage_two_trains_the_module_alone_and_resumes_exactly(compose, tmp_path) -> None:
    Trainer(compose("train", [*TINY_TRAIN_OVERRIDES, "model=tiny_fcn", "trainer.max_iters=2"]), tmp_path / "front").fit()
    front = load_checkpoint(tmp_path / "front/checkpoints/last.pt")["model"]
    stage_two = [*STAGE_TWO, f"model.init_from={tmp_path / 'front/checkpoints/last.pt'}", "trainer.max_iters=4",
                 "trainer.val_every=2", "model.context.residual=false"]
    summary = Trainer(compose("train", stage_two), tmp_path / "straight").fit()
    assert summary["iterations"] == 4 and 0 <= summary["final"]["mIoU"] <= 1
    straight = load_checkpoint(tmp_path / "straight/checkpoints/last.pt")["model"]
    # The front end is the stage-one checkpoint's, weights and BatchNorm statistics alike; the module moved.
    assert all(torch.equal(front[key], straight[key]) for key in front)
    initial = build_model(compose("train", stage_two).model, 5, pretrained=False).state_dict()
    assert not torch.equal(initial["context.layers.0.weight"], straight["context.layers.0.weight"])

    Trainer(compose("train", stage_two), tmp_path / "split").fit(until=2)
    Trainer(compose("train", [*stage_two, "trainer.resume=auto"]), tmp_path / "split").fit()
    split = load_checkpoint(tmp_path / "split/checkpoints/last.pt")["model"]
    assert all(torch.equal(straight[key], split[key]) for key in straight)


def test_images_of_several_sizes_cannot_be_cached(compose, tmp_path) -> None:
    from segdil.engine.frozen_cache import cache_front_end

    model = build_model(compose("train", [*SMALL, "model=dilated_resnet18_context", "model.freeze=[backbone,head]"]).model, 3)
    images = [(torch.rand(3, 32, 32), torch.zeros(32, 32, dtype=torch.long)), (torch.rand(3, 40, 32), torch.zeros(40, 32, dtype=torch.long))]

    class TwoSizes(torch.utils.data.Dataset):
        split = "train"

        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int):
            return images[index]

    # One batch of both: the collate would pad the 32x32 image to 40x32 and hide the difference.
    with pytest.raises(ConfigError, match=r"the train images come in several sizes after the val transform \(\(32, 32\) for the first, \(40, 32\) for image 1\)"):
        cache_front_end(model.eval(), TwoSizes(), 2, torch.device("cpu"), nullcontext)


@pytest.mark.parametrize(("freeze", "warned"), [("[backbone,head]", True), ("[backbone]", False)])
def test_a_frozen_head_without_a_front_end_is_named(compose, caplog, freeze: str, warned: bool) -> None:
    build_model(compose("train", [*SMALL, "model=dilated_resnet18_context", f"model.freeze={freeze}"]).model, 3)
    assert ("model.init_from=null: the frozen head keeps its random initialisation" in caplog.text) == warned
