"""Every configs/experiment/*.yaml composes and trains for two iterations on a tiny tree in the
official layout of its own dataset; the staged Yu & Koltun schedule chains its three stages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CONFIGS, REPO
from segdil.engine.checkpoint import load_checkpoint
from segdil.engine.trainer import Trainer
from trees import camvid_mask, make_camvid, make_cityscapes, make_sbd, make_voc

EXPERIMENTS = sorted(path.stem for path in (CONFIGS / "experiment").glob("*.yaml"))
# Shrinks any recipe to seconds: a width-8 backbone (no ImageNet weights exist at that width) on
# 16x16 crops, batch 2, two iterations, data loaded in the test's own process.
TINY = [
    "model.backbone.width=8",
    "model.backbone.weights=null",
    "aug.crop_size=[16,16]",
    "data.batch_size=2",
    "data.val_batch_size=2",
    "data.num_workers=0",
    "trainer.max_iters=2",
    "trainer.val_every=2",
    "trainer.val_panels=1",
    "trainer.progress=false",
]


def voc_tree(root: Path) -> Path:
    """VOC 2012 and SBD as downloaded, then scripts/prepare_voc_sbd.py: serves voc and voc_aug."""
    make_voc(root / "voc", {"train": ["t1", "t2"], "val": ["v1", "v2"]}, {"t1": 3, "t2": 7, "v1": 9, "v2": 15}, unlabelled=("s1", "s2"))
    make_sbd(root / "sbd", {"train": ["s1", "t2"], "val": ["s2"]}, {"s1": 12, "t2": 7, "s2": 20})
    spec = importlib.util.spec_from_file_location("prepare_voc_sbd", REPO / "scripts" / "prepare_voc_sbd.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.prepare(root / "voc", root / "sbd")
    return root / "voc"


def cityscapes_tree(root: Path) -> Path:
    """leftImg8bit / gtFine with label ids of 0..33 (train ids and ignore after mapping)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        names = [f"aachen_00000{k}_000019" for k in range(4)]
        make_cityscapes(root, split, {name: rng.integers(0, 34, (24, 32), dtype=np.uint8) for name in names}, {})
    return root


def camvid_tree(root: Path) -> Path:
    for split in ("train", "val"):
        make_camvid(root, split, {f"{split}{k}": camvid_mask(k) for k in range(4)})
    return root


# The dataset class an experiment trains on -> the builder of a tiny tree in its layout.
TREES = {"PascalVOC": voc_tree, "Cityscapes": cityscapes_tree, "CamVid": camvid_tree}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    return {name: build(tmp_path_factory.mktemp(name)) for name, build in TREES.items()}


def tiny(compose, experiment: str, trees: dict[str, Path], *overrides: str):
    """The experiment's config on the tree of its own dataset, shrunk by TINY."""
    dataset = compose("train", [f"experiment={experiment}"]).dataset._target_.rsplit(".", 1)[-1]
    return compose("train", [f"experiment={experiment}", f"dataset.root={trees[dataset]}", *TINY, *overrides])


TWINS = [
    ("camvid_context", "camvid_nocontext"),
    ("camvid_fast", "camvid_fast_nocontext"),
    ("camvid_hour", "camvid_hour_nocontext"),
    ("camvid_fast_r10_context", "camvid_fast_r10"),
    ("camvid_hour_r10_context", "camvid_hour_r10"),
]


# A recipe -> the same recipe with photometric augmentation (aug=seg_photometric).
PHOTOMETRIC = [
    ("camvid_fast_r10", "camvid_fast_r10_photometric"),
    ("camvid_hour_r10", "camvid_hour_r10_photometric"),
]
PHOTOMETRIC_LEVERS = ("jitter_p", "blur_p", "noise_p")  # the aug keys seg_photometric turns on


def test_the_recipes_and_their_twins_exist() -> None:
    assert {name for pair in TWINS + PHOTOMETRIC for name in pair} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_two_iterations(experiment: str, trees: dict[str, Path], tmp_path: Path, compose) -> None:
    trainer = Trainer(tiny(compose, experiment, trees), tmp_path)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    summary = trainer.fit()
    assert summary["iterations"] == 2 and summary["final"] is not None
    assert 0.0 <= summary["final"]["mIoU"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_yu_koltun_stages_chain(trees: dict[str, Path], tmp_path: Path, compose) -> None:
    """Front end; then the context module alone on it (front end frozen); then both."""
    runs = {}
    init_from: list[str] = []
    for stage in ("frontend", "context", "joint"):
        cfg = tiny(compose, f"voc_dilation8_{stage}", trees, *init_from)
        Trainer(cfg, tmp_path / stage).fit()
        runs[stage] = load_checkpoint(tmp_path / stage / "checkpoints" / "last.pt")["model"]
        init_from = [f"model.init_from={tmp_path / stage / 'checkpoints' / 'last.pt'}"]
    front_end = [key for key in runs["frontend"] if key.startswith(("backbone.", "head."))]
    assert all(torch.equal(runs["context"][key], runs["frontend"][key]) for key in front_end)
    assert any(not torch.equal(runs["joint"][key], runs["context"][key]) for key in front_end)
    context = [key for key in runs["context"] if key.startswith("context.")]
    assert context and any(not torch.equal(runs["joint"][key], runs["context"][key]) for key in context)


@pytest.mark.parametrize(("recipe_name", "twin_name"), TWINS)
def test_twin_differs_from_the_recipe_only_by_the_context_module(recipe_name: str, twin_name: str, compose) -> None:
    recipe = compose("train", [f"experiment={recipe_name}"])
    twin = compose("train", [f"experiment={twin_name}"])
    assert recipe.model.context is not None and twin.model.context is None
    for key in ("dataset", "aug", "data", "optim", "schedule", "loss", "trainer", "seed"):
        assert recipe[key] == twin[key], key
    assert recipe.model.backbone == twin.model.backbone and recipe.model.head == twin.model.head


@pytest.mark.parametrize(("recipe_name", "photometric_name"), PHOTOMETRIC)
def test_photometric_recipe_is_the_recipe_with_the_three_levers_on(recipe_name: str, photometric_name: str, compose) -> None:
    """Exactly the command the notebook ran: the recipe plus aug.jitter_p, aug.blur_p, aug.noise_p."""
    photometric = compose("train", [f"experiment={photometric_name}"])
    levers = [f"aug.{key}={photometric.aug[key]}" for key in PHOTOMETRIC_LEVERS]
    assert all(photometric.aug[key] > 0 for key in PHOTOMETRIC_LEVERS)
    assert compose("train", [f"experiment={recipe_name}"]) != photometric
    assert compose("train", [f"experiment={recipe_name}", *levers]) == photometric
