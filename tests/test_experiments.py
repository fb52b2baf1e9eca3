"""Every configs/experiment/*.yaml composes and trains for two iterations on a tiny CamVid tree."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import CONFIGS
from segdil.engine.trainer import Trainer
from trees import camvid_mask, make_camvid

EXPERIMENTS = sorted(path.stem for path in (CONFIGS / "experiment").glob("*.yaml"))
# Shrinks any recipe to seconds: a width-8 backbone on 16x16 crops, batch 2, two iterations.
TINY = [
    "model.backbone.width=8",
    "aug.crop_size=[16,16]",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "trainer.max_iters=2",
    "trainer.val_every=2",
    "trainer.val_panels=1",
    "trainer.progress=false",
]


@pytest.fixture(scope="module")
def camvid_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("camvid")
    for split in ("train", "val"):
        make_camvid(root, split, {f"{split}{k}": camvid_mask(k) for k in range(4)})
    return root


def test_the_recipe_and_its_twin_exist() -> None:
    assert {"camvid_context", "camvid_nocontext"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_two_iterations(experiment: str, camvid_tree: Path, tmp_path: Path, compose) -> None:
    cfg = compose("train", [f"experiment={experiment}", f"dataset.root={camvid_tree}", *TINY])
    trainer = Trainer(cfg, tmp_path)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    summary = trainer.fit()
    assert summary["iterations"] == 2 and summary["final"] is not None
    assert 0.0 <= summary["final"]["mIoU"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_twin_differs_from_the_recipe_only_by_the_context_module(compose) -> None:
    recipe = compose("train", ["experiment=camvid_context"])
    twin = compose("train", ["experiment=camvid_nocontext"])
    assert recipe.model.context is not None and twin.model.context is None
    for key in ("dataset", "aug", "data", "optim", "schedule", "loss", "trainer", "seed"):
        assert recipe[key] == twin[key], key
    assert recipe.model.backbone == twin.model.backbone and recipe.model.head == twin.model.head
